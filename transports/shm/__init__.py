"""The shm transport: collectives through shared memory on one host, by our own code.

See :mod:`transports.shm.transport` for the algorithms and their memory
traffic, :mod:`.segment` for how segments are shared without leaking, and
:mod:`.sync` for how ranks wait for each other.
"""

from transports.base import TransportOptions
from transports.shm.transport import ALGOS, BUFFERS, ShmTransport, probe

__all__ = ["ShmTransport", "create", "probe", "ALGOS", "BUFFERS"]


def create(comm, options: TransportOptions) -> ShmTransport:
    return ShmTransport(comm, options)
