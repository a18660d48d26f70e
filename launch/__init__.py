"""The top of the package order: sweeps (:mod:`launch.sweep`), job scripts (:mod:`launch.jobscript`)
and link emulation (:mod:`launch.emulate`).  Who am I and the control communicator are
:mod:`ground.env` and :mod:`ground.comm`."""
