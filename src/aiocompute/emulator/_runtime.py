"""What the emulator's server and its API modules share at run time.

:class:`Runtime` holds one emulator's clock, live fault switches, request accounting,
wakeable sleeps (:class:`Signal`) and fault-aware streams (:class:`StreamSink`); the records
a test reads back (:class:`Transition`, :class:`ChunkWrite`, :class:`RequestRecord`) are
defined here too. The server (``_server``) and the API modules (``workbench``, ``qiskit``,
``lakesail``, ``etengine``) import this module and never each other's internals: the
server imports the API modules, the API modules import only this one (and ``_config``).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import attrs
from aiohttp import web

from ._config import FaultConfig

__all__ = [
    "ChunkWrite",
    "RequestRecord",
    "Runtime",
    "Signal",
    "StreamSink",
    "Transition",
    "entered_by",
    "first_entered",
    "lookup",
    "phase_at",
]

_T = TypeVar("_T")


class Transition(NamedTuple):
    """One recorded state change: the state entered and when, on both clocks.

    ``monotonic`` is ``time.monotonic()`` (equal to ``loop.time()`` on asyncio's default loop);
    benchmarks subtract it from their own ``time.monotonic()`` to measure detection lag.
    """

    state: str
    wall_time: float
    monotonic: float


# A record's life is a list of Transitions, oldest first, some of them in the future: what
# it is at an instant is read off that list. One reading for every emulated API.


def phase_at(phases: Sequence[Transition], now: float) -> Transition:
    """The phase in force at ``now``: the last one entered by then (the first, before any)."""
    for phase in reversed(phases):
        if phase.monotonic <= now:
            return phase
    return phases[0]


def entered_by(phases: Sequence[Transition], now: float) -> list[Transition]:
    """The phases entered by ``now``, oldest first."""
    return [phase for phase in phases if phase.monotonic <= now]


def first_entered(phases: Sequence[Transition], state: str, now: float) -> Transition | None:
    """The first entry into ``state`` by ``now``, if any."""
    for phase in phases:
        if phase.state == state and phase.monotonic <= now:
            return phase
    return None


class ChunkWrite(NamedTuple):
    """One streamed value handed to the transport in full.

    ``job_id`` is the job's id (for an audited job, its audited id); ``stream_seq`` numbers
    the output streams opened for that job, from 0 (a reconnect replays the output, so one
    chunk may be written once per stream); ``chunk_index`` is the chunk's index in the job's
    output; ``nbytes`` the value's size on the wire, framing included. ``monotonic`` is
    ``time.monotonic()`` right after the last byte was written, ``wall_time`` the same instant
    as ``time.time()`` (converted like :class:`Transition` times). A value cut short by a
    fault is not reported.
    """

    job_id: str
    stream_seq: int
    chunk_index: int
    nbytes: int
    wall_time: float
    monotonic: float


@attrs.frozen
class RequestRecord:
    """What the emulator saw of one request (no headers, so never a credential).

    Attributes:
        api: ``"workbench"``... or ``None`` when the path matched no API route.
        method: the API method (``"get_session"``), or ``None``.
        http_method: ``"GET"``, ``"POST"``...
        path: the URL path.
        monotonic: arrival time, ``time.monotonic()``.
    """

    api: str | None
    method: str | None
    http_method: str
    path: str
    monotonic: float

    @property
    def key(self) -> str | None:
        """``"api.method"``, the key used by :attr:`Emulator.stats` and the fault switches."""
        if self.api is None or self.method is None:
            return None
        return f"{self.api}.{self.method}"


class Signal:
    """A broadcast wake-up: :meth:`fire` releases everyone sleeping on it through a Runtime."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        """Wake every current sleeper."""
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _add(self, fut: asyncio.Future[None]) -> None:
        self._waiters.add(fut)

    def _discard(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)


def lookup(table: Mapping[str, _T], key: str) -> tuple[str, _T] | None:
    """The most specific entry of a fault table for ``"api.method"``: method, API, then ``*``
    (the matching key and its value), or None."""
    api = key.split(".", 1)[0]
    for candidate in (key, api, "*"):
        if candidate in table:
            return candidate, table[candidate]
    return None


class Runtime:
    """State shared by the server and the API modules of one emulator.

    Holds the clock (``time.monotonic()`` with a fixed offset to wall time, so every recorded
    instant converts exactly), the live :class:`FaultConfig`, the request counters and the
    shutdown signal every sleeping stream listens to.
    """

    def __init__(self, faults: FaultConfig, seed: int, log_size: int) -> None:
        self.faults = faults
        self.seed = seed
        self.stats: collections.Counter[str] = collections.Counter()
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=log_size)
        self.hooks: list[Callable[[RequestRecord], object]] = []
        self.chunk_hooks: list[Callable[[ChunkWrite], object]] = []
        self.open_streams: collections.Counter[str] = collections.Counter()
        self.closing = False
        self.closed_signal = Signal()
        self._fault_rng = random.Random(f"faults:{seed}")
        self._buckets: dict[str, tuple[float, float]] = {}
        self._wall_offset = time.time() - time.monotonic()

    # -- clock ---------------------------------------------------------------------------
    def now(self) -> float:
        """The emulator clock: ``time.monotonic()``."""
        return time.monotonic()

    def wall(self, monotonic: float) -> float:
        """Wall-clock (``time.time()``) seconds for an instant of the emulator clock."""
        return monotonic + self._wall_offset

    async def sleep(self, delay: float, *signals: Signal) -> None:
        """Sleep up to ``delay`` seconds; return early if a signal fires or the server stops."""
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, delay), _resolve, fut)
        watched = (*signals, self.closed_signal)
        for sig in watched:
            sig._add(fut)
        try:
            await fut
        finally:
            handle.cancel()
            for sig in watched:
                sig._discard(fut)

    def close(self) -> None:
        """Mark the server as stopping and wake every sleeper."""
        self.closing = True
        self.closed_signal.fire()

    # -- faults --------------------------------------------------------------------------
    def take(self, table: dict[str, int], key: str) -> bool:
        """Consume one unit of a ``*_next`` counter matching ``key``; True if one fired."""
        found = lookup({k: v for k, v in table.items() if v > 0}, key)
        if found is None:
            return False
        table[found[0]] = found[1] - 1
        return True

    def roll(self, table: Mapping[str, float], key: str) -> bool:
        """Seeded coin toss against the matching probability of ``table``."""
        found = lookup(table, key)
        return found is not None and self._fault_rng.random() < found[1]

    def over_rate(self, key: str) -> bool:
        """Token bucket of :attr:`FaultConfig.rate_limit_rps`: True if this request exceeds it."""
        found = lookup(self.faults.rate_limit_rps, key)
        if found is None:
            return False
        bucket_key, rps = found
        if rps <= 0:
            return True
        now = self.now()
        capacity = max(1.0, rps)
        tokens, last = self._buckets.get(bucket_key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rps)
        if tokens >= 1.0:
            self._buckets[bucket_key] = (tokens - 1.0, now)
            return False
        self._buckets[bucket_key] = (tokens, now)
        return True

    def malformed(self, key: str) -> str | None:
        """The malformed-body kind switched on for ``key``, if any."""
        found = lookup(self.faults.malformed, key)
        return None if found is None else found[1]

    def open_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        key: str,
        encode: Callable[[object], bytes],
    ) -> StreamSink:
        """A :class:`StreamSink` for a prepared streaming response, with its faults drawn now.

        The stream counts as open (:attr:`open_streams`) until :meth:`StreamSink.close`.
        """
        return StreamSink(self, request, response, key, encode)

    def chunk_written(self, write: ChunkWrite) -> None:
        """Report a :class:`ChunkWrite` to every ``on_chunk_written`` callable, in order."""
        for hook in list(self.chunk_hooks):
            hook(write)

    def _draw_stream_fault(self, after: int | None, count_attr: str) -> int | None:
        if after is None:
            return None
        count = getattr(self.faults, count_attr)
        if count is None:
            return after
        if count <= 0:
            return None
        setattr(self.faults, count_attr, count - 1)
        return after


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StreamSink:
    """A streamed response body that honours the live stream faults and the server's shutdown.

    API modules write whole values through :meth:`send`; it returns False once the stream
    must end (cut by a fault, ended by an injected error, a truncation or a clean close,
    client gone, server stopping). :attr:`cut` tells an abrupt end (no clean chunked
    terminator) apart. The stream counts in :attr:`Runtime.open_streams` from creation until
    :meth:`close` (or the end of a ``with`` block): API modules close it when their handler
    is done.
    """

    def __init__(
        self,
        runtime: Runtime,
        request: web.Request,
        response: web.StreamResponse,
        key: str,
        encode: Callable[[object], bytes],
    ) -> None:
        faults = runtime.faults
        self._runtime = runtime
        self._request = request
        self._response = response
        self._encode = encode
        self._api = key.split(".", 1)[0]
        self._drop_after = runtime._draw_stream_fault(
            faults.drop_stream_after_bytes, "drop_stream_count"
        )
        self._close_after = runtime._draw_stream_fault(
            faults.close_stream_after_bytes, "close_stream_count"
        )
        self._stall_after = runtime._draw_stream_fault(
            faults.stall_stream_after_bytes, "stall_stream_count"
        )
        self._stall_seconds = faults.stall_seconds
        self._error_after = runtime._draw_stream_fault(
            faults.stream_error_after_chunks, "stream_error_count"
        )
        self._malformed = runtime.malformed(key)
        self._stalled = False
        self.sent_bytes = 0
        self.sent_values = 0
        self.cut = False
        self.ended = False
        self.closed = False
        self._written_at = 0.0
        self._value_bytes = 0
        runtime.open_streams[self._api] += 1
        runtime.stats["streams_opened"] += 1

    def close(self) -> None:
        """Stop counting this stream as open (idempotent). Does not touch the connection."""
        if self.closed:
            return
        self.closed = True
        counts = self._runtime.open_streams
        counts[self._api] -= 1
        if counts[self._api] <= 0:
            del counts[self._api]

    def __enter__(self) -> StreamSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def send(
        self, value: object, *, written: Callable[[int, float], object] | None = None
    ) -> bool:
        """Write one value; False once the stream must end.

        ``written`` is called with the value's size in bytes and the ``time.monotonic()``
        instant its last byte was written, once it was written in full.
        """
        if self.cut or self.ended:
            return False
        if self._runtime.closing:
            self.abort()
            return False
        if self._error_after is not None and self.sent_values >= self._error_after:
            self._runtime.stats["faults.stream_error"] += 1
            error = {"error": {"code": 500, "message": "emulated failure while streaming output"}}
            await self._write(self._encode(error))
            self.ended = True
            return False
        data = self._encode(value)
        if self._malformed == "truncated":
            self._runtime.stats["faults.malformed"] += 1
            await self._write(data[: max(1, len(data) // 2)])
            self.ended = True
            return False
        ok = await self._write(data)
        # Reported even when a fault ends the stream right after the value's last byte.
        if written is not None and self._value_bytes == len(data):
            written(len(data), self._written_at)
        if not ok:
            return False
        self.sent_values += 1
        if self._malformed in ("garbage", "html") and self.sent_values == 1:
            self._runtime.stats["faults.malformed"] += 1
            return await self._write(b"\x00<garbage>}{not json")
        return True

    async def _write(self, data: bytes) -> bool:
        pos = 0
        self._value_bytes = 0
        while pos < len(data) or self._due_fault():
            limit = len(data)
            if self._drop_after is not None:
                limit = min(limit, pos + max(0, self._drop_after - self.sent_bytes))
            if self._close_after is not None:
                limit = min(limit, pos + max(0, self._close_after - self.sent_bytes))
            if self._stall_after is not None and not self._stalled:
                limit = min(limit, pos + max(0, self._stall_after - self.sent_bytes))
            piece = data[pos:limit]
            pos = limit
            if piece:
                try:
                    await self._response.write(piece)
                except ConnectionError:
                    self.cut = True
                    return False
                # Taken before any stall below: the instant these bytes reached the transport.
                self._written_at = self._runtime.now()
                self._value_bytes += len(piece)
                self.sent_bytes += len(piece)
                self._runtime.stats["bytes_streamed"] += len(piece)
                self._runtime.stats[f"{self._api}.bytes_streamed"] += len(piece)
            if self._drop_after is not None and self.sent_bytes >= self._drop_after:
                self._runtime.stats["faults.drop_stream"] += 1
                self.abort()
                return False
            if self._close_after is not None and self.sent_bytes >= self._close_after:
                # Returning lets the handler finish: aiohttp sends the chunked terminator.
                self._runtime.stats["faults.close_stream"] += 1
                self.ended = True
                return False
            if (
                self._stall_after is not None
                and not self._stalled
                and self.sent_bytes >= self._stall_after
            ):
                self._stalled = True
                self._runtime.stats["faults.stall"] += 1
                await self._runtime.sleep(self._stall_seconds)
                if self._runtime.closing:
                    self.abort()
                    return False
        return True

    def _due_fault(self) -> bool:
        # A byte threshold already reached (e.g. 0) fires even before any byte is written.
        if self._drop_after is not None and self.sent_bytes >= self._drop_after:
            return True
        if self._close_after is not None and self.sent_bytes >= self._close_after:
            return True
        return (
            self._stall_after is not None
            and not self._stalled
            and self.sent_bytes >= self._stall_after
        )

    def abort(self) -> None:
        """End the stream abruptly: close the connection with no chunked terminator."""
        self.cut = True
        transport = self._request.transport
        if transport is not None:
            transport.close()
