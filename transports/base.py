"""The Transport protocol, the Unsupported error, and buffer helpers.

A transport moves data between ranks.  The protocol (:class:`Transport`,
a ``typing.Protocol``) is narrow: ``rank``, ``size``, buffers, one method
per collective, ``synchronize``, a timer, ``describe`` and ``close``, plus
optional capabilities that :class:`TransportBase` defaults to "not
supported".  Each collective method *prepares* the operation and returns a
:class:`Bound`: ``bound.run()`` executes it (this is what the timed loop
calls, so a transport binds everything it can beforehand), and
``bound.result`` is the buffer or view that holds this rank's result
afterwards (None where the rank gets none, e.g. a non-root in reduce).

Buffer conventions (``send is None`` means in place):

* allreduce, sendrecv, alltoall: in place, ``recv`` holds the input.
* broadcast: ``send`` is read at the root only; in place, the root's
  ``recv`` holds the data.
* reduce: in place, every rank's ``recv`` holds its input; only the root's
  result is defined.
* allgather: in place, this rank's block already sits at
  ``recv[rank*block:(rank+1)*block]``.
* reduce_scatter: in place, ``recv`` holds all p blocks of input; where
  the result lands is the transport's choice (MPI: block 0; NCCL: block
  ``rank``), and ``bound.result`` says which.

A transport that cannot do something raises :class:`Unsupported` from the
method; the harness reports it in the table, never fakes it.

:class:`TorchTransport` extends the protocol for the runners that drive
torch.distributed themselves (replicate's DistributedDataParallel): the
torch module, ``torch.distributed``, the process group and the device.
:func:`protocol_members` names what a protocol declares and
:func:`missing_members` what an object lacks of it.
"""

from __future__ import annotations

import gc
import time
import weakref
from dataclasses import dataclass, fields
from typing import (Any, Callable, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Protocol, Union,
                    get_type_hints, runtime_checkable)

import numpy as np

from ground.dtypes import DType

__all__ = ["Bound", "Unsupported", "Transport", "TorchTransport", "TransportOptions", "HostTimer", "TransportBase",
           "protocol_members", "missing_members", "local_divide", "cleanup_all"]

_LIVE: "weakref.WeakSet" = weakref.WeakSet()


def cleanup_all() -> None:
    """Release, without talking to any other rank, what every live transport
    would leave behind if this process ended now.  Called on the way to an
    abort (error, timeout, Ctrl-C), when other ranks may be gone."""
    for transport in list(_LIVE):
        try:
            transport.cleanup()
        except Exception:
            pass


class Unsupported(Exception):
    """This transport cannot perform the requested operation (the reason is the message)."""


class Bound(NamedTuple):
    run: Callable[[], Any]
    result: Any
    # Optional: the same operation compiled (a transports.native.timer.NativeLoop),
    # whose iterations run without returning to Python; the harness times and
    # validates through it unless --loop python.
    native: Any = None


class HostTimer:
    """Per-iteration wall-clock stamps for host-synchronous transports.

    ``loop(run, iters, synchronize)`` calls ``run`` ``iters`` times and
    returns ``iters + 1`` perf_counter stamps; iteration i took
    ``stamps[i+1] - stamps[i]``.  Stamps are filled in order over a list of
    zeros, so a watchdog thread can read progress without any cost in the
    loop.

    With ``before`` (``--fresh-inputs``), ``before()`` runs ahead of every
    iteration outside the clock: the stamps then add up the collective's
    own durations only.
    """

    def __init__(self):
        self.stamps: List[float] = []

    def loop(self, run: Callable[[], Any], iters: int, synchronize: Callable[[], Any],
             before: Callable[[], Any] = None) -> List[float]:
        # As timeit does: no garbage collection pause inside the timed loop
        # (collscale's process holds far more objects than a bare loop's).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._loop(run, iters, synchronize, before)
        finally:
            if was_enabled:
                gc.enable()

    def _loop(self, run, iters, synchronize, before) -> List[float]:
        clock = time.perf_counter
        stamps = [0.0] * (iters + 1)
        self.stamps = stamps
        if before is not None:
            return self._loop_fresh(run, iters, synchronize, before, stamps)
        stamps[0] = clock()
        for i in range(1, iters + 1):
            run()
            stamps[i] = clock()
        # Device transports' work may still be queued: the clock stops after it.
        synchronize()
        stamps[iters] = clock()
        return stamps

    @staticmethod
    def _loop_fresh(run, iters, synchronize, before, stamps) -> List[float]:
        clock = time.perf_counter
        stamps[0] = elapsed = clock()
        for i in range(1, iters + 1):
            before()
            t0 = clock()
            run()
            synchronize()
            elapsed += clock() - t0
            stamps[i] = elapsed
        return stamps


@dataclass(frozen=True)
class TransportOptions:
    """What a run asks of its transport (each is None where the user gave nothing).

    ``timeout`` is the user's -T in seconds (0: none); a transport whose own
    waits honour it sets :attr:`Transport.enforces_timeout`.
    """

    algo: Optional[str] = None  # --algo, where a transport has several
    buffer: Optional[str] = None  # --buffer: where buffers live
    device: Optional[str] = None  # --device: cpu, cuda, hpu
    iface: Optional[str] = None  # --iface: network interface
    timeout: float = 0.0
    loop: Optional[str] = None  # --loop: auto (compiled where the transport has it), compiled, python
    cuda_graph: bool = False  # --cuda-graph: capture the timed iterations as CUDA graphs (nccl)

    @classmethod
    def coerce(cls, options: Union["TransportOptions", Mapping[str, Any], None]) -> "TransportOptions":
        """Options from a mapping with these keys (tests, scripts) or as they are."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown transport options: {', '.join(sorted(unknown))}")
        return cls(**options)


@runtime_checkable
class Transport(Protocol):
    """Every member the harness, the runner core and the patterns use.

    Required: identity (``name``, ``rank``, ``size``), buffers (``alloc``,
    ``view``, ``to_host``, ``from_host``, ``fill``), one method per
    collective returning a :class:`Bound`, ``synchronize``, ``timer``,
    ``describe`` and ``close``.

    Optional capabilities, each with a "not supported" default in
    :class:`TransportBase`, so a transport declares only what it has:

    * point-to-point: ``p2p`` (weight streaming is built from it; the
      default raises :class:`Unsupported`);
    * a device timer: ``timer`` may return a :class:`HostTimer` subclass
      that stamps on the device (CUDA events); the default stamps the host
      clock;
    * cleanup: ``cleanup`` releases, without talking to other ranks, what
      an abort would leave behind (shared memory); the default does nothing;
    * enforcing the timeout itself: ``enforces_timeout`` is True when the
      transport's own waits give up after ``TransportOptions.timeout`` and
      name the rank they waited for (the watchdog then only backs them up);
      the default is False;
    * a compiled loop: a bound call may carry ``Bound.native``, the same
      operation compiled (:class:`transports.native.timer.NativeLoop`),
      whose iterations run in C; the harness then times and validates through
      it unless ``--loop python``, and ``describe()["loop"]`` says
      ``compiled`` (else ``python``; ``cuda-graph`` for CUDA-graph replay).
      The default binds none.
    """

    name: str
    rank: int
    size: int
    enforces_timeout: bool

    def alloc(self, count: int, dtype: DType) -> Any: ...
    def view(self, buf, dtype: DType) -> Any: ...
    def to_host(self, buf) -> np.ndarray: ...
    def from_host(self, buf, values: np.ndarray) -> None: ...
    def fill(self, buf, value) -> None: ...
    def allreduce(self, send, recv, dtype: DType, op: str) -> Bound: ...
    def broadcast(self, send, recv, dtype: DType, root: int) -> Bound: ...
    def reduce(self, send, recv, dtype: DType, op: str, root: int) -> Bound: ...
    def allgather(self, send, recv, dtype: DType) -> Bound: ...
    def reduce_scatter(self, send, recv, dtype: DType, op: str) -> Bound: ...
    def alltoall(self, send, recv, dtype: DType) -> Bound: ...
    def sendrecv(self, send, recv, dtype: DType, dest: int, source: int) -> Bound: ...
    def pingpong(self, send, recv, dtype: DType, peer: int) -> Bound: ...
    def barrier(self) -> Bound: ...
    def p2p(self, sends, recvs, dtype: DType) -> Callable[[], Any]: ...
    def synchronize(self) -> None: ...
    def timer(self) -> "HostTimer": ...
    def describe(self) -> Dict[str, Any]: ...
    def cleanup(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class TorchTransport(Transport, Protocol):
    """A :class:`Transport` over torch.distributed, for runners that drive torch themselves.

    :mod:`collectives.replicate` wraps a model in DistributedDataParallel,
    hooks its gradient buckets and times the allreduce alone; it needs, beyond
    the :class:`Transport` members (``rank``, ``size`` among them):

    * ``torch``: the imported ``torch`` module (tensors, optimizers, ``nn.parallel``,
      ``cuda``/``hpu`` synchronisation, ``set_num_threads``);
    * ``dist``: the imported ``torch.distributed`` module (``all_reduce``, ``barrier``);
    * ``group``: the ``ProcessGroup`` the transport's own collectives run in,
      of ``size`` ranks over the measured backend; DDP, its communication
      hook and the runner's barriers use it;
    * ``device``: the ``torch.device`` the transport's tensors live on (cpu,
      ``cuda:<local rank>``, hpu), where the model and its inputs are built.

    The torch.distributed transports (gloo, nccl, hccl, torch-mpi:
    :mod:`transports.torch_dist`) provide it.
    """

    torch: Any
    dist: Any
    group: Any
    device: Any


def protocol_members(protocol: type) -> FrozenSet[str]:
    """Every member ``protocol`` declares, its bases' included: annotated attributes and public methods."""
    names = set(get_type_hints(protocol))
    for cls in protocol.__mro__:
        if Protocol not in cls.__bases__:  # a protocol class names Protocol among its bases
            continue
        names |= {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
    return frozenset(names)


def missing_members(obj: Any, protocol: type) -> List[str]:
    """The members of ``protocol`` that ``obj`` lacks, sorted (empty: it provides them all).

    Looked up with ``hasattr``, so a proxy's ``__getattr__`` counts (from
    Python 3.12, ``isinstance`` against a runtime protocol looks members up
    statically and would not see them)."""
    return sorted(n for n in protocol_members(protocol) if not hasattr(obj, n))


class TransportBase:
    """Host-memory defaults: numpy buffers, no device streams, a host timer.

    Collective methods default to raising :class:`Unsupported`, so a
    transport implements exactly what it can and the rest is reported.
    """

    name = "base"
    enforces_timeout = False

    def __init__(self, rank: int, size: int):
        self.rank = rank
        self.size = size
        _LIVE.add(self)

    def cleanup(self) -> None:
        """Best-effort local release before an abort (see :func:`cleanup_all`)."""
        return None

    def alloc(self, count: int, dtype: DType):
        # Written once, so every page is mapped before anything is timed
        # (np.zeros maps large arrays lazily: the first timed call would pay
        # the page faults).
        buf = np.empty(max(count, 0), dtype=dtype.storage)
        buf.fill(0)
        return buf

    def view(self, buf, dtype: DType):
        """``buf`` (bytes from :meth:`alloc`) reinterpreted as ``dtype``."""
        return buf.view(dtype.storage)

    def to_host(self, buf) -> np.ndarray:
        return np.asarray(buf)

    def from_host(self, buf, values) -> None:
        buf[...] = values

    def fill(self, buf, value) -> None:
        buf.fill(value)

    def _unsupported(self, what: str):
        raise Unsupported(f"{self.name} has no {what}")

    def allreduce(self, send, recv, dtype, op):
        self._unsupported("allreduce")

    def broadcast(self, send, recv, dtype, root):
        self._unsupported("broadcast")

    def reduce(self, send, recv, dtype, op, root):
        self._unsupported("reduce")

    def allgather(self, send, recv, dtype):
        self._unsupported("allgather")

    def reduce_scatter(self, send, recv, dtype, op):
        self._unsupported("reduce_scatter")

    def alltoall(self, send, recv, dtype):
        self._unsupported("alltoall")

    def sendrecv(self, send, recv, dtype, dest, source):
        self._unsupported("sendrecv")

    def pingpong(self, send, recv, dtype, peer):
        self._unsupported("pingpong")

    def barrier(self):
        self._unsupported("barrier")

    def p2p(self, sends, recvs, dtype: DType):
        """A zero-argument call that posts every (buffer, peer) send and receive
        at once and returns when all are complete (patterns such as
        weight streaming are built from these)."""
        self._unsupported("point-to-point transfers")

    def synchronize(self) -> None:
        return None

    def timer(self) -> HostTimer:
        return HostTimer()

    def describe(self) -> Dict[str, Any]:
        return {"transport": self.name}

    def close(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def local_divide(buf: np.ndarray, divisor: int) -> None:
    """In-place ``buf /= divisor`` for ``avg`` built from a sum (exact for exact sums)."""
    # The divisor may not fit the buffer's type (int8 at 200 ranks): divide
    # in 64 bits and store back.
    if buf.dtype.kind == "f":
        np.divide(buf, np.float64(divisor), out=buf, casting="unsafe")
    else:
        wide = np.uint64 if buf.dtype.kind == "u" else np.int64  # uint64 with int64 would go via float
        np.floor_divide(buf, wide(divisor), out=buf, casting="unsafe")
