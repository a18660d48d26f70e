"""The real CLI entry point with one rank made to stall in a chosen phase of the end.

    mpirun -n 2 python tests/e2e/stall_driver.py PHASE TRANSPORT [harness flags]

PHASE: ``close`` (rank 1 never returns from closing its transport) or
``finalize`` (rank 1 never returns from finalising MPI, after the closing
barrier): tests check that -T still ends the job, with exit 124; ``hang``
(rank 1 never finishes its first timed loop); ``raise``
(rank 1 raises an unexpected error when it times its first call): the job
is aborted.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collectives import cli, runner  # noqa: E402
from ground import comm as launch_comm  # noqa: E402


def _stall(*_a, **_k):
    time.sleep(3600)


def main() -> int:
    phase, transport, *flags = sys.argv[1:]
    comm, _ = launch_comm.world()
    if comm.rank == 1:
        if phase == "close":
            real_start = runner.start_transport

            def start(c, cfg):
                t = real_start(c, cfg)
                t.close = _stall  # the instance's close: rank 1 never leaves it
                return t
            runner.start_transport = start
        elif phase == "finalize":
            type(comm).finalize = _stall
        elif phase == "hang":  # rank 1 never finishes its first timed loop (its peers wait in the call)
            from collectives import timed_loop

            timed_loop.Timing.loop = _stall
        elif phase == "raise":  # an unexpected error on one rank only, mid-run
            from collectives import timed_loop

            def boom(*_a, **_k):
                raise RuntimeError("injected failure on rank 1")
            timed_loop.Timing.time = boom
        else:
            raise SystemExit(f"unknown phase {phase}")
    return cli.main("allreduce", ["--transport", transport, *flags])


if __name__ == "__main__":
    raise SystemExit(main())
