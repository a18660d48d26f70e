"""The facts and models every layer reads.

Below the transports and the runners, above :mod:`ground`: the collectives'
facts (:mod:`facts.spec`, with the expected results in :mod:`facts.validate`),
the one record builder and its schema (:mod:`facts.record`), the fabric
models (:mod:`facts.costmodel`, :mod:`facts.fabrics`) and a row's share of
them (:mod:`facts.percent_of_model`), the workloads' model table
(:mod:`facts.workloads`, torch builders in :mod:`facts.torch_models`) and the
host limits a run is checked against (:mod:`facts.host_limits`).  No MPI, no
transport, no runner: every module here is pure.
"""
