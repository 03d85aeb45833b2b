"""The emulator server: one aiohttp application, one sub-application per API, fault middleware.

Layout of the URL space (one loopback port)::

    /                     JSON index of the emulated APIs
    /workbench/api/<m>    Posit Workbench API (``workbench`` module)
    /lakesail/api/v1/...  LakeSail platform workloads API (``lakesail`` module)
    /qiskit/api/v1/...    Qiskit Runtime sessions API (``qiskit`` module)
    /qiskit/iam/...       its IBM Cloud IAM token endpoint
    /etengine/v1/...      ET Engine batches API (``etengine`` module)

Each API module declares, the same way, ``API`` (its name: routes are named
``"<api>.<method>"``, and the fault middleware on the root application reads that name to
count, log and fault requests per API and method), ``PREFIX`` (where it is mounted) and
``API_ROOT`` (its base URL under the prefix); it has a state class made from its config and
the shared :class:`~aiocompute.emulator._runtime.Runtime`, and ``create_app(state)``
returning its ``aiohttp.web.Application``. :class:`Emulator` builds its application, its
``/`` index and its ``*_url`` properties from those declarations. Adding an API means adding
a module of that shape, creating its state in :class:`Emulator`, mounting it in
:meth:`Emulator._build_app` and listing it in ``_APIS``.

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
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .._core.checks import count
from . import etengine, lakesail, qiskit, workbench
from ._config import EmulatorConfig, FaultConfig
from ._runtime import ChunkWrite, RequestRecord, Runtime, lookup

__all__ = ["Emulator", "serve"]

# The emulated APIs, in the order of the ``/`` index.
_APIS = (workbench, lakesail, qiskit, etengine)

#: Hosts accepted without ``allow_remote``.
_LOOPBACK_NAMES = ("localhost",)


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
        delay = lookup(faults.latency, key)
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
        _check_host(host, allow_remote)
        count(port, "port", maximum=65535)
        self.config = config if config is not None else EmulatorConfig()
        # "localhost" may resolve to two addresses, and port 0 would give each its own port.
        self.host = "127.0.0.1" if host == "localhost" else host
        self.seed = seed
        faults = self.config.faults.copy()
        faults.check()
        self._runtime = Runtime(faults, seed, self.config.request_log_size)
        self.workbench = workbench.WorkbenchState(self.config.workbench, self._runtime)
        self.lakesail = lakesail.LakeSailState(self.config.lakesail, self._runtime)
        self.qiskit = qiskit.QiskitState(self.config.qiskit, self._runtime)
        self.etengine = etengine.ETEngineState(self.config.etengine, self._runtime)
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
        return self.url + workbench.PREFIX + workbench.API_ROOT

    @property
    def lakesail_url(self) -> str:
        """The LakeSail API root, to pass as ``LakeSailClient(base_url=...)``: its endpoints
        live at ``<this>/workloads/...`` (``/lakesail/api/v1`` on this server)."""
        return self.url + lakesail.PREFIX + lakesail.API_ROOT

    @property
    def qiskit_url(self) -> str:
        """The Qiskit API base, to pass as ``QiskitRuntimeClient(base_url=...)`` (sessions live at
        ``<this>/v1/sessions``)."""
        return self.url + qiskit.PREFIX + qiskit.API_ROOT

    @property
    def qiskit_iam_url(self) -> str:
        """The emulated IBM Cloud IAM token endpoint, for ``QiskitRuntimeClient(iam_url=...)``."""
        return self.url + qiskit.PREFIX + qiskit.IAM_PATH

    @property
    def etengine_url(self) -> str:
        """The ET Engine API base, to pass as ``ETEngineClient(base_url=...)`` (``.../v1``)."""
        return self.url + etengine.PREFIX + etengine.API_ROOT

    # -- lifecycle -----------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[_make_middleware(self._runtime)])
        app.router.add_get("/", self._index)
        app.add_subapp(workbench.PREFIX, workbench.create_app(self.workbench))
        app.add_subapp(lakesail.PREFIX, lakesail.create_app(self.lakesail))
        app.add_subapp(qiskit.PREFIX, qiskit.create_app(self.qiskit))
        app.add_subapp(etengine.PREFIX, etengine.create_app(self.etengine))
        return app

    async def _index(self, _request: web.Request) -> web.Response:
        apis = {api.API: api.PREFIX + api.API_ROOT for api in _APIS}
        return web.json_response({"emulator": "aiocompute", "apis": apis})

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
