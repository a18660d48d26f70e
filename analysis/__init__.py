"""Pure functions over collscale results (no MPI is imported here).

The latency-bandwidth fits, fabric models, workloads and scaling reports
arrive with the analysis issue; today this package only reserves the name.
"""
