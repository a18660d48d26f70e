"""Who am I under any launcher (:mod:`launch.env`) and the harness's control
communicator (:mod:`launch.comm`)."""
