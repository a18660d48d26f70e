"""Pure functions over collscale results and other tools' logs (no MPI is imported here).

Loading (:mod:`.results`, :mod:`.importers`), latency-bandwidth fits
(:mod:`.costmodel`, :mod:`.fit`), published fabric models (:mod:`.fabrics`,
:mod:`.percent_of_model`), predictions (:mod:`.predict`), the workloads and the
data-parallel step model (:mod:`.workloads`, :mod:`.step_model`,
:mod:`.calibrate`, :mod:`.scaling`) and the report (:mod:`.report`).
docs/report.md describes the commands; docs/ARCHITECTURE.md the layering.
"""
