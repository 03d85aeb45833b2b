"""The emulator server: one aiohttp application, one sub-application per API, fault middleware.

Layout of the URL space (one loopback port)::

    /                     JSON index of the emulated APIs
    /workbench/api/<m>    Posit Workbench API (``workbench`` module)
    /lakesail/api/v1/...  LakeSail platform workloads API (``lakesail`` module)
    /qiskit/api/v1/...    Qiskit Runtime sessions API (``qiskit`` module)
    /qiskit/iam/...       its IBM Cloud IAM token endpoint
    /etengine/v1/...      ET Engine batches API (``etengine`` module)

Each API module exposes ``PREFIX``, a state class and ``create_app(state)`` returning an
``aiohttp.web.Application`` whose routes are named ``"<api>.<method>"``; the fault middleware
on the root application reads that name to count, log and fault requests per API and method.
Adding an API means adding a module of that shape, creating its state in
:class:`Emulator` and mounting it in :meth:`Emulator._build_app` (and the ``/`` index).

This module also holds what the API modules share at run time (:class:`Runtime`): the clock,
the live fault switches, request accounting, wakeable sleeps and fault-aware streams.

Streams are observable from the test side:

- ``emu.open_streams`` counts the streamed responses being served right now
  (``emu.open_streams_by_api`` per API). A stream stays open until its handler is done: the
  output ended, a fault ended it, or the server noticed at its next write that the client
  had gone. A test that a client releases its connections waits for it to reach 0.
- Every streamed value whose bytes were all written to the transport is reported as a
  :class:`ChunkWrite` (job id, stream number, chunk index, size, and the write instant on
  both clocks) to the callables in ``emu.on_chunk_written``; the Workbench emulator also
  keeps the most recent ones per job (``emu.workbench.jobs[job_id].writes``). Benchmarks
  subtract them from their own ``time.time()`` to measure delivery latency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import attrs
from aiohttp import web

from ._config import EmulatorConfig, FaultConfig

if TYPE_CHECKING:
    from .etengine import ETEngineState
    from .lakesail import LakeSailState
    from .qiskit import QiskitState
    from .workbench import WorkbenchState

__all__ = [
    "ChunkWrite",
    "Emulator",
    "RequestRecord",
    "Runtime",
    "Signal",
    "StreamSink",
    "Transition",
    "serve",
]

_T = TypeVar("_T")

#: Hosts accepted without ``allow_remote``.
_LOOPBACK_NAMES = ("localhost",)


class Transition(NamedTuple):
    """One recorded state change: the state entered and when, on both clocks.

    ``monotonic`` is ``time.monotonic()`` (equal to ``loop.time()`` on asyncio's default loop);
    benchmarks subtract it from their own ``time.monotonic()`` to measure detection lag.
    """

    state: str
    wall_time: float
    monotonic: float


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


def _lookup(table: Mapping[str, _T], key: str) -> tuple[str, _T] | None:
    """The most specific entry of a fault table for ``"api.method"``: method, API, then ``*``."""
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
        found = _lookup({k: v for k, v in table.items() if v > 0}, key)
        if found is None:
            return False
        table[found[0]] = found[1] - 1
        return True

    def roll(self, table: Mapping[str, float], key: str) -> bool:
        """Seeded coin toss against the matching probability of ``table``."""
        found = _lookup(table, key)
        return found is not None and self._fault_rng.random() < found[1]

    def over_rate(self, key: str) -> bool:
        """Token bucket of :attr:`FaultConfig.rate_limit_rps`: True if this request exceeds it."""
        found = _lookup(self.faults.rate_limit_rps, key)
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
        found = _lookup(self.faults.malformed, key)
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


# -- canned answers of a proxy in front of the server --------------------------------------

_REASONS = {
    401: "Unauthorized",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def html_error(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    """An HTML error page like the ones a reverse proxy answers with."""
    reason = _REASONS.get(status, "Error")
    body = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><h1>{status} {reason}</h1><hr><center>nginx</center></body></html>"
    )
    return web.Response(
        status=status, text=body, content_type="text/html", headers=dict(headers or {})
    )


_LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign In - Posit Workbench</title></head>"
    "<body><form action='/auth-do-sign-in' method='POST'></form></body></html>"
)


def _malform(response: web.Response, kind: str) -> web.Response:
    """Break a JSON answer the way :attr:`FaultConfig.malformed` asks."""
    body = response.body if isinstance(response.body, bytes) else b""
    if kind == "truncated":
        return web.Response(
            status=response.status, body=body[: len(body) // 2], content_type="application/json"
        )
    if kind == "garbage":
        return web.Response(
            status=response.status, body=b"\x00\xff<<garbage>>", content_type="application/json"
        )
    if kind == "html":
        return web.Response(status=200, text=_LOGIN_PAGE, content_type="text/html")
    return web.Response(status=200, body=b"", content_type="application/json")


def _route_key(request: web.Request) -> tuple[str | None, str | None]:
    name = getattr(request.match_info.route, "name", None)
    if not name or "." not in name:
        return None, None
    api, method = name.split(".", 1)
    return api, method


def _make_middleware(runtime: Runtime) -> Any:
    @web.middleware
    async def fault_middleware(
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        api, method = _route_key(request)
        record = RequestRecord(api, method, request.method, request.path, runtime.now())
        stats = runtime.stats
        stats["total"] += 1
        runtime.requests.append(record)
        key = record.key
        if key is not None:
            stats[str(api)] += 1
            stats[key] += 1
        for hook in list(runtime.hooks):
            hook(record)
        if key is None:
            response: web.StreamResponse = await handler(request)
            return response
        faults = runtime.faults
        delay = _lookup(faults.latency, key)
        if delay is not None and delay[1] > 0:
            await runtime.sleep(delay[1])
        if runtime.take(faults.drop_next, key):
            stats["faults.drop"] += 1
            transport = request.transport
            if transport is not None:
                transport.close()
            # Never delivered: the connection is already closed.
            return web.Response(status=500)
        if runtime.take(faults.bad_gateway_next, key):
            stats["faults.bad_gateway"] += 1
            return html_error(502)
        if runtime.take(faults.error_next, key) or runtime.roll(faults.error_rate, key):
            stats["faults.error"] += 1
            return html_error(faults.error_status)
        if runtime.take(faults.rate_limit_next, key) or runtime.over_rate(key):
            stats["faults.rate_limit"] += 1
            return html_error(429, {"Retry-After": str(faults.retry_after)})
        response = await handler(request)
        kind = runtime.malformed(key)
        if kind is not None and isinstance(response, web.Response):
            stats["faults.malformed"] += 1
            return _malform(response, kind)
        return response

    return fault_middleware


def _check_host(host: str, allow_remote: bool) -> None:
    if allow_remote or host in _LOOPBACK_NAMES:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the emulator only listens on loopback by default; host {host!r} is not a "
            "loopback address (pass allow_remote=True to bind it anyway)"
        )


class Emulator:
    """An in-process server that speaks the emulated compute APIs over real loopback HTTP.

    Usage::

        async with Emulator(seed=1) as emu:
            url = emu.workbench_url          # http://127.0.0.1:PORT/workbench
            ...
            emu.faults.error_rate["workbench.get_session"] = 0.2
            assert emu.stats["workbench.get_session"] > 0
            emu.workbench.sessions[sid].transitions   # [(state, wall_time, monotonic), ...]

    Args:
        host: interface to bind; loopback only unless ``allow_remote`` is true.
        port: TCP port, 0 for a free one (read it back from :attr:`port`).
        config: timings, identities and initial faults; defaults suit fast tests.
        seed: seeds every random draw (ids, delays, fault coin tosses) for reproducibility.
        allow_remote: permit binding a non-loopback interface.

    Attributes:
        faults: the live :class:`FaultConfig` (a copy of ``config.faults``); mutate it freely.
        stats: request counters: ``"total"``, per API (``"workbench"``), per method
            (``"workbench.get_session"``), ``"bytes_streamed"``, ``"streams_opened"``,
            ``"faults.<kind>"``.
        requests: the most recent :class:`RequestRecord` values, oldest first.
        hooks: callables run synchronously with each :class:`RequestRecord` as it arrives.
        on_chunk_written: callables run synchronously with each :class:`ChunkWrite`.
        open_streams: how many streamed responses are being served now.
        workbench: the simulated Workbench state (:class:`~aiocompute.emulator.WorkbenchState`).
        lakesail: the simulated LakeSail platform (:class:`~aiocompute.emulator.LakeSailState`).
        qiskit: the simulated Qiskit Runtime and IAM (:class:`~aiocompute.emulator.QiskitState`).
        etengine: the simulated ET Engine (:class:`~aiocompute.emulator.ETEngineState`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
        seed: int = 0,
        allow_remote: bool = False,
    ) -> None:
        from .workbench import WorkbenchState  # API modules import this module

        _check_host(host, allow_remote)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        self.config = config if config is not None else EmulatorConfig()
        # "localhost" may resolve to two addresses, and port 0 would give each its own port.
        self.host = "127.0.0.1" if host == "localhost" else host
        self.seed = seed
        faults = self.config.faults.copy()
        faults.check()
        self._runtime = Runtime(faults, seed, self.config.request_log_size)
        self.workbench: WorkbenchState = WorkbenchState(self.config.workbench, self._runtime)
        from .lakesail import LakeSailState

        self.lakesail: LakeSailState = LakeSailState(self.config.lakesail, self._runtime)
        from .etengine import ETEngineState
        from .qiskit import QiskitState

        self.qiskit: QiskitState = QiskitState(self.config.qiskit, self._runtime)
        self.etengine: ETEngineState = ETEngineState(self.config.etengine, self._runtime)
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    # -- public accessors ----------------------------------------------------------------
    @property
    def faults(self) -> FaultConfig:
        """The live fault switches."""
        return self._runtime.faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        value.check()
        self._runtime.faults = value

    @property
    def stats(self) -> collections.Counter[str]:
        """Request counters (missing keys read as 0)."""
        return self._runtime.stats

    @property
    def requests(self) -> collections.deque[RequestRecord]:
        """Recent requests, oldest first (bounded by ``config.request_log_size``)."""
        return self._runtime.requests

    @property
    def hooks(self) -> list[Callable[[RequestRecord], object]]:
        """Per-request callbacks, run in arrival order."""
        return self._runtime.hooks

    @property
    def on_chunk_written(self) -> list[Callable[[ChunkWrite], object]]:
        """Callbacks run with each :class:`ChunkWrite`, right after its bytes were written.

        They run inside the stream's handler: keep them quick; an exception ends the stream.
        """
        return self._runtime.chunk_hooks

    @property
    def open_streams(self) -> int:
        """How many streamed responses (job output streams) are being served right now."""
        return sum(self._runtime.open_streams.values())

    @property
    def open_streams_by_api(self) -> dict[str, int]:
        """:attr:`open_streams` per API (``{"workbench": 2}``); APIs with none are absent."""
        return {api: n for api, n in self._runtime.open_streams.items() if n > 0}

    def reset_stats(self) -> None:
        """Zero :attr:`stats` and forget :attr:`requests`."""
        self._runtime.stats.clear()
        self._runtime.requests.clear()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def port(self) -> int:
        """The bound TCP port (after start)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running: use 'async with Emulator()' first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        elif host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def workbench_url(self) -> str:
        """Base URL of the Workbench API (its methods live at ``<this>/api/<method>``)."""
        return self.url + "/workbench"

    @property
    def lakesail_url(self) -> str:
        """The LakeSail API root, to pass as ``LakeSailClient(base_url=...)``: its endpoints
        live at ``<this>/workloads/...`` (``/lakesail/api/v1`` on this server)."""
        from . import lakesail

        return self.url + lakesail.PREFIX + lakesail.API_ROOT

    @property
    def qiskit_url(self) -> str:
        """The Qiskit API base, to pass as ``QiskitRuntimeClient(url=...)`` (sessions live at
        ``<this>/v1/sessions``)."""
        return self.url + "/qiskit/api"

    @property
    def qiskit_iam_url(self) -> str:
        """The emulated IBM Cloud IAM token endpoint, for ``QiskitRuntimeClient(iam_url=...)``."""
        from . import qiskit

        return self.url + qiskit.PREFIX + qiskit.IAM_PATH

    @property
    def etengine_url(self) -> str:
        """The ET Engine API base, to pass as ``ETEngineClient(url=...)`` (``.../v1``)."""
        return self.url + "/etengine/v1"

    # -- lifecycle -----------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        from . import workbench

        app = web.Application(middlewares=[_make_middleware(self._runtime)])
        app.router.add_get("/", self._index)
        app.add_subapp(workbench.PREFIX, workbench.create_app(self.workbench))
        from . import lakesail

        app.add_subapp(lakesail.PREFIX, lakesail.create_app(self.lakesail))
        from . import etengine, qiskit

        app.add_subapp(qiskit.PREFIX, qiskit.create_app(self.qiskit))
        app.add_subapp(etengine.PREFIX, etengine.create_app(self.etengine))
        return app

    async def _index(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "emulator": "aiocompute",
                "apis": {
                    "workbench": "/workbench",
                    "lakesail": "/lakesail/api/v1",
                    "qiskit": "/qiskit/api",
                    "etengine": "/etengine/v1",
                },
            }
        )

    async def start(self) -> None:
        """Bind and start serving. Raises RuntimeError if already running."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        self._runtime.closing = False
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.config.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving: live streams are cut, in-flight requests finish, connections close.

        Idempotent. Afterwards no task of the emulator is left pending.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._runtime.close()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"<Emulator {where} seed={self.seed}>"

    @classmethod
    def run_forever(
        cls,
        host: str = "127.0.0.1",
        port: int = 8000,
        config: EmulatorConfig | None = None,
        *,
        seed: int = 0,
        allow_remote: bool = False,
        on_ready: Callable[[Emulator], object] | None = None,
    ) -> None:
        """Serve in a fresh event loop until interrupted (Ctrl-C); blocking."""
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(
                    host,
                    port,
                    config,
                    seed=seed,
                    allow_remote=allow_remote,
                    on_ready=on_ready,
                )
            )


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    config: EmulatorConfig | None = None,
    *,
    seed: int = 0,
    allow_remote: bool = False,
    on_ready: Callable[[Emulator], object] | None = None,
    duration: float | None = None,
) -> None:
    """Run an emulator until cancelled (or for ``duration`` seconds), for the CLI.

    ``on_ready`` is called with the started :class:`Emulator` (e.g. to print its URL).
    """
    async with Emulator(
        host=host, port=port, config=config, seed=seed, allow_remote=allow_remote
    ) as emu:
        if on_ready is not None:
            on_ready(emu)
        if duration is not None:
            await asyncio.sleep(duration)
        else:
            # Serving until the caller cancels us is the whole point of this coroutine.
            await asyncio.Event().wait()
