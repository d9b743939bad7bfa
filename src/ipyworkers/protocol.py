"""What the kernel and the workers say to each other: one small typed record per kind.

Shared by both sides. A record travels as a plain tuple ``(code, *fields)`` (small and
fast to pickle) and is rebuilt on arrival from the registry, in the manner of
execnet's ``Message._types``. Each side dispatches with a handler table keyed by type.

Links and who speaks on them:

* **control** (kernel <-> worker k): the kernel sends ``Peers``, ``Run``, ``Interrupt``,
  ``Forget``, ``Get``, ``Ping``, ``PeerIdle``, ``PeerBusy``, ``PeerLost``, ``Shutdown``; the worker answers
  ``Hello`` once (answered by ``Welcome`` or ``Refused``), then ``Started``, ``Waiting``,
  ``Fetched``, ``Finished``, ``Unrun``, ``Output``, ``Display``, ``Clear``, ``StreamStats``,
  ``Value``, ``Pong``, ``Relay`` (a value from a worker it cannot reach, which the kernel
  fetches and passes on as ``Value``).
* **peer** (worker i -> worker j, opened by i): i sends ``PeerHello`` once, then ``Get``
  and the channel records ``ChanOpen``, ``Chans``, ``ChanClose``, ``ChanAbort``, ``ChanDrop``,
  ``ChanSync``; j answers ``Value``, ``Credit``, ``ChanRefused`` and ``ChanSynced``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

REGISTRY: dict[int, type] = {}


def message(cls: type) -> type:
    """Register a record type; its code is its place in this module."""
    cls._kind = len(REGISTRY)
    REGISTRY[cls._kind] = cls
    return cls


def pack(msg: NamedTuple) -> tuple:
    return (type(msg)._kind, *msg)


def unpack(raw: tuple) -> Any:
    try:
        cls = REGISTRY[raw[0]]
        return cls._make(raw[1:])
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"unknown or malformed message {raw[:1]!r}") from exc


# -- kernel -> worker -------------------------------------------------------------------------


@message
class Peers(NamedTuple):
    """Where every worker listens for peer links."""
    addresses: dict[int, str]


@message
class Run(NamedTuple):
    """A task. ``deps``: (name, version, source) per input; ``kernel_values`` and ``payload``
    index the frame's parts as (name, count) pairs; ``call`` is set for a function call.
    ``version``: the version the task's writes produce, when not ``task`` (a copy of a
    replicated task: the first copy's id)."""
    task: int
    code: str | None
    cell: int | None
    deps: list[tuple[str, int, int]]
    peers: dict[int, str]
    writes: list[str]
    want_result: bool
    kernel_values: list[tuple[str, int]]
    payload: list[tuple[str, int]]
    call: dict | None
    version: int | None = None


@message
class Interrupt(NamedTuple):
    """KeyboardInterrupt in ``task`` if it runs or waits for inputs (any task if None)."""
    task: int | None


@message
class Forget(NamedTuple):
    """``task`` will not run (cancelled before dispatch); readers of it get ``reason``."""
    task: int
    reason: str


@message
class Get(NamedTuple):
    """Send ``name`` at ``version`` once it exists (answered by ``Value``)."""
    req: int
    name: str
    version: int


@message
class Ping(NamedTuple):
    seq: int


@message
class PeerIdle(NamedTuple):
    """``worker`` has nothing running and nothing queued; ``epochs`` is the last stream
    epoch it opened to each worker, ``reason`` what its last task did, ``failed`` whether
    that task failed (only then does a stream waiting on it give up: an idle worker whose
    work went well may still get the cell that streams)."""
    worker: int
    epochs: dict[int, int]
    reason: str
    failed: bool = False


@message
class PeerBusy(NamedTuple):
    """``worker`` has work again (after a ``PeerIdle``)."""
    worker: int


@message
class PeerLost(NamedTuple):
    worker: int
    reason: str


@message
class Shutdown(NamedTuple):
    pass


# -- worker -> kernel --------------------------------------------------------------------------


@message
class Hello(NamedTuple):
    worker: int
    pid: int
    host: str
    peer_address: str
    versions: dict[str, str]
    token: str
    clock: float


@message
class Started(NamedTuple):
    task: int
    at: float


@message
class Waiting(NamedTuple):
    """``task`` waits for its inputs: (name, source) pairs."""
    task: int
    inputs: list[tuple[str, int]]


@message
class Fetched(NamedTuple):
    task: int
    name: str
    version: int
    source: int
    size: int
    t0: float
    t1: float


@message
class Finished(NamedTuple):
    """``error``: (ename, evalue, traceback) or None; ``written``: names bound (all of the
    task's writes on success, those bound before the error on failure); ``epochs``: the
    last stream epoch opened to each worker."""
    task: int
    t0: float
    t1: float
    error: tuple[str, str, list[str]] | None
    sizes: dict[str, int]
    missing: list[str]
    written: list[str]
    epochs: dict[int, int]


@message
class Unrun(NamedTuple):
    """The task never ran: cancelled for ``root`` (an input's original failure), or, with
    no root, failed getting its inputs."""
    task: int
    message: str
    root: str | None
    at: float


@message
class Output(NamedTuple):
    """Text the task wrote to ``stream`` ('stdout' or 'stderr'), batched."""
    task: int | None
    stream: str
    text: str


@message
class Display(NamedTuple):
    task: int | None
    data: dict
    metadata: dict
    transient: dict
    update: bool


@message
class Clear(NamedTuple):
    task: int | None
    wait: bool


@message
class StreamStats(NamedTuple):
    """Stream traffic from ``source`` to this worker, aggregated for the timeline."""
    source: int
    count: int
    size: int
    t0: float
    t1: float


@message
class Value(NamedTuple):
    """Answer to ``Get``. ``status``: 'ok' (``info`` = time served, parts = the value),
    'failed' (``info`` = root cause), 'error' (``info`` = message), 'missing'."""
    req: int
    status: str
    info: Any


@message
class Pong(NamedTuple):
    seq: int
    clock: float
    """The worker's monotonic clock as it answered: with the ping's round trip, it places
    the worker's clock against the kernel's to within half that round trip."""


# -- worker <-> worker ------------------------------------------------------------------------


@message
class PeerHello(NamedTuple):
    worker: int


@message
class ChanOpen(NamedTuple):
    """A new stream from ``source`` starts; every record of it carries ``epoch``."""
    source: int
    epoch: int


@message
class Chans(NamedTuple):
    """A batch of stream messages; ``counts``: how many parts each message has. ``ask``: the
    producer's window is full; the consumer returns its credit once it has taken the batch."""
    source: int
    epoch: int
    counts: list[int]
    ask: bool


@message
class ChanClose(NamedTuple):
    source: int
    epoch: int


@message
class ChanAbort(NamedTuple):
    """The producer failed before closing the stream."""
    source: int
    epoch: int
    reason: str


@message
class Credit(NamedTuple):
    """The consumer took ``count`` messages (``size`` bytes) of stream ``epoch``."""
    epoch: int
    count: int
    size: int


@message
class ChanRefused(NamedTuple):
    """The consumer stopped receiving stream ``epoch``: the producer's next send raises."""
    epoch: int
    reason: str


@message
class ChanDrop(NamedTuple):
    """The producer gave up stream ``epoch`` because the consumer was not taking it: the
    consumer drops what it holds of it (unlike ``ChanAbort``, nobody is told)."""
    source: int
    epoch: int
    reason: str


@message
class ChanSync(NamedTuple):
    """Producer -> consumer, at the end of a task that streamed to it: answer ``ChanSynced``
    once all sent before is taken in, so the kernel's news that the producer is idle can
    never overtake its last records."""
    source: int
    token: int


@message
class ChanSynced(NamedTuple):
    token: int


# -- joining, and values relayed through the kernel ------------------------------------------------


@message
class Welcome(NamedTuple):
    """Kernel -> worker, after its ``Hello``: the worker's id (assigned here for a worker
    that joined with none) and the highest worker id of the cluster."""
    worker: int
    n_workers: int


@message
class Refused(NamedTuple):
    """Kernel -> worker, instead of ``Welcome``: why it was not taken (it then exits)."""
    reason: str


@message
class Relay(NamedTuple):
    """Worker -> kernel: this worker cannot reach ``source`` directly; fetch ``name`` at
    ``version`` from it for me. Answered on the control link by ``Value(req, ...)``."""
    req: int
    source: int
    name: str
    version: int


def local_versions() -> dict[str, str]:
    """What both ends of a link must agree on."""
    import sys

    import cloudpickle

    from ._version import __version__

    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "ipyworkers": __version__,
            "cloudpickle": cloudpickle.__version__}


# -- values that travel inside results ---------------------------------------------------------


class _Nothing:
    """A worker that got no items has no partial result."""

    def __reduce__(self):
        return (_nothing, ())


def _nothing() -> _Nothing:
    return NOTHING


NOTHING = _Nothing()
