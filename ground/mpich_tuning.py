"""MPICH's intra-node collectives at FUNNELED: small sizes on its shared-memory algorithm, large on its generic ones.

MPICH (4.x, 5.x: ``ch4:shm:posix``) runs intra-node allreduce, bcast and
reduce with its ``release_gather`` algorithm whenever the job is not
multi-threaded: its default selection (``maint/tuning/coll/ch4/posix_generic.json``
in MPICH's sources) has one rule, ``is_multi_threaded=no`` -> release_gather,
at every size.  For allreduce and bcast release_gather is the fastest at
small sizes and the slowest at large ones (it moves the data through
fixed shared-memory cells).  Under MPI_THREAD_MULTIPLE the rule does not
match, so MPICH falls back to its generic algorithms (``MPIR_*_impl``: for
allreduce at 2 ranks, reduce-scatter + allgather over point-to-point),
which are 1.5-7x faster at 16 MiB.  This is why MULTIPLE looked faster for
large messages (docs/timing.md).

:data:`TUNING_FILE` keeps release_gather for allreduce and bcast up to
:data:`RELEASE_GATHER_MAX_BYTES` and falls back above it, at any thread
level, so one MPI_Init at FUNNELED gives both; reduce keeps MPICH's own
rule (release_gather at every size), which is 3.8x faster than the
fallback at 1 MiB and 16 MiB (measured: docs/results/2026-12.md).  :func:`apply` points MPICH at it
(``MPIR_CVAR_CH4_POSIX_COLL_SELECTION_TUNING_JSON_FILE``, read at
MPI_Init) unless the library is not MPICH or the user chose MPICH's
selection themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, MutableMapping, Optional

__all__ = ["TUNING_FILE", "TUNING_VAR", "RELEASE_GATHER_MAX_BYTES", "USER_VARS", "is_mpich", "why_not", "apply"]

TUNING_FILE = Path(__file__).with_name("mpich_posix.json")
TUNING_VAR = "MPIR_CVAR_CH4_POSIX_COLL_SELECTION_TUNING_JSON_FILE"
RELEASE_GATHER_MAX_BYTES = 256 * 1024  # the file's avg_msg_size<= bound (measured: docs/results/2026-12.md)
# Variables by which a user chooses MPICH's intra-node selection: any of them set, collscale sets nothing.
USER_VARS = (TUNING_VAR, "MPIR_CVAR_ALLREDUCE_POSIX_INTRA_ALGORITHM", "MPIR_CVAR_BCAST_POSIX_INTRA_ALGORITHM",
             "MPIR_CVAR_REDUCE_POSIX_INTRA_ALGORITHM", "MPIR_CVAR_DEVICE_COLLECTIVES")  # (reduce: the same file)


def is_mpich(library_version: str) -> bool:
    """True for MPICH itself (``MPI_Get_library_version`` starts "MPICH Version"), not its derivatives."""
    return library_version.replace("\x00", " ").lstrip().startswith("MPICH Version")


def why_not(library_version: str, env: Mapping[str, str] = os.environ) -> Optional[str]:
    """Why the tuning file cannot be used, or None when it can."""
    if env.get("COLLSCALE_MPICH_TUNING", "").strip().lower() in ("0", "no", "off", "false"):
        return "COLLSCALE_MPICH_TUNING is off"
    if not is_mpich(library_version):
        return "not MPICH"
    given = [v for v in USER_VARS if env.get(v)]
    if given:
        return f"{given[0]} is set: MPICH's selection as given"
    if not TUNING_FILE.is_file():
        return f"{TUNING_FILE} is missing"
    return None


def apply(library_version: str, env: MutableMapping[str, str] = os.environ) -> Optional[str]:
    """Point MPICH at :data:`TUNING_FILE` (before MPI_Init); the header's note, or None where not applied."""
    if why_not(library_version, env) is not None:
        return None
    env[TUNING_VAR] = str(TUNING_FILE)
    kib = RELEASE_GATHER_MAX_BYTES // 1024
    return (f"MPICH intra-node allreduce and bcast: release_gather up to {kib} KiB, MPICH's generic algorithms "
            f"above (as MPI_THREAD_MULTIPLE gets them) via {TUNING_VAR}")
