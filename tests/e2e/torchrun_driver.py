"""Run every collective over gloo in-process under torchrun; rank 0 writes a summary.

    torchrun --nproc-per-node N tests/e2e/torchrun_driver.py SUMMARY.json
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collectives import cli  # noqa: E402
from facts.spec import SPECS  # noqa: E402
from ground.comm import world  # noqa: E402
from ground.env import detect  # noqa: E402


def main(out: str) -> int:
    comm, _ = world()
    summary = {}
    for name, spec in SPECS.items():
        if spec.exact_ranks and spec.exact_ranks != comm.size:
            continue
        recs = cli.run(name, comm, ["--transport", "gloo", "-b", "8", "-e", "16K", "-f", "8", "-n", "2",
                                    "-w", "1", "-d", "float32,int32,bfloat16", "-o", "sum,min,avg"])
        ok = sum(r["status"] == "ok" for r in recs)
        wrong = sum(r["wrong"] or 0 for r in recs)
        summary[name] = (ok, wrong, detect().launcher)
    if comm.rank == 0:
        Path(out).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1])
    # As the CLI ends under torchrun (collectives.lifecycle): gloo's threads
    # sometimes abort the interpreter's final teardown ("terminate called
    # without an active exception", SIGABRT) after every result is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
