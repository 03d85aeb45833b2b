"""A fault-injecting reverse proxy: put it between a client and a server to test what the
client makes of the network's worst moments.

:class:`ChaosProxy` listens on loopback and forwards every request to ``upstream`` (an
emulator, or any HTTP server of yours). For the requests it is told to target (by default
every ``POST`` and ``DELETE``: the calls that create or destroy things) it injects, at
random with a seeded generator, one of these faults (:class:`Fault`):

=====================  =====================================================================
fault                  what the client sees                       did the server act?
=====================  =====================================================================
``DROP_BEFORE``        the connection is cut, no answer           no
``COMMIT_THEN_DROP``   the connection is cut, no answer           yes
``COMMIT_THEN_502``    ``502 Bad Gateway``                        yes
``STATUS_502``         ``502 Bad Gateway``                        no
``STATUS_503``         ``503 Service Unavailable``                no
``STATUS_504``         ``504 Gateway Timeout``                    no
``STATUS_429``         ``429 Too Many Requests`` (Retry-After)    no
``STALL``              no answer for ``stall`` seconds, then the  yes (late: the client may
                       server's answer                            have given up by then)
=====================  =====================================================================

``proxy.log`` records, per request, the fault injected (or None) and whether it reached the
server, so a test can compare what exists with what the client was told::

    async with Emulator() as emu, ChaosProxy(emu.url, rates={Fault.COMMIT_THEN_DROP: 0.3}) as p:
        et = ETEngineClient(api_key="et-key", base_url=p.url + "/etengine/v1")
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from attrs import frozen

from .._core.checks import count, number, probability

__all__ = ["ChaosProxy", "ChaosRecord", "Fault"]

# Headers that concern one hop only (RFC 9110 §7.6.1), plus the ones aiohttp sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class Fault(enum.Enum):
    """A fault the proxy can inject (see the module's table)."""

    DROP_BEFORE = "drop_before"
    COMMIT_THEN_DROP = "commit_then_drop"
    COMMIT_THEN_502 = "commit_then_502"
    STATUS_502 = "502"
    STATUS_503 = "503"
    STATUS_504 = "504"
    STATUS_429 = "429"
    STALL = "stall"


#: Faults after which the server has acted on the request.
COMMITTED = frozenset({Fault.COMMIT_THEN_DROP, Fault.COMMIT_THEN_502, Fault.STALL})

_STATUS = {
    Fault.STATUS_502: 502,
    Fault.STATUS_503: 503,
    Fault.STATUS_504: 504,
    Fault.STATUS_429: 429,
    Fault.COMMIT_THEN_502: 502,
}


@frozen
class ChaosRecord:
    """One request through the proxy: what it was, the fault injected, and whether the
    server received it (``forwarded``) and with what status it answered (None if not)."""

    method: str
    path: str
    fault: Fault | None
    forwarded: bool
    upstream_status: int | None


def _targets_writes(request: web.Request) -> bool:
    return request.method in ("POST", "DELETE")


class ChaosProxy:
    """A reverse proxy to ``upstream`` that injects :class:`Fault` s at random.

    ``rates`` maps each fault to its probability per targeted request (their sum at most 1;
    the rest go through untouched). ``targets`` picks the requests that may get a fault
    (default: ``POST`` and ``DELETE``). ``stall`` is how long a ``STALL`` holds the answer.
    ``max_faults`` stops injecting after that many faults (None: never stops), e.g. to fail
    only the first try of a create. ``seed`` makes the sequence of faults repeatable.
    Binds to 127.0.0.1 only.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rates: Mapping[Fault, float],
        targets: Callable[[web.Request], bool] = _targets_writes,
        stall: float = 2.0,
        max_faults: int | None = None,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        total = 0.0
        for fault, rate in rates.items():
            if not isinstance(fault, Fault):
                raise TypeError(f"rates keys must be Fault members, got {fault!r}")
            probability(rate, f"rates[{fault.name}]")
            total += rate
        if total > 1 + 1e-9:
            raise ValueError(f"the fault rates add up to {total:g}, more than 1")
        number(stall, "stall", minimum=0, unit="seconds")
        if max_faults is not None:
            count(max_faults, "max_faults")
        count(port, "port", maximum=65535)
        self.upstream = upstream.rstrip("/")
        self.rates = dict(rates)
        self.stall = stall
        self.max_faults = max_faults
        self._targets = targets
        self._rng = random.Random(seed)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Every request, in arrival order.
        self.log: list[ChaosRecord] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (while running)."""
        if self._runner is None:
            raise RuntimeError("the proxy is not running: use 'async with ChaosProxy(...)'")
        return f"http://127.0.0.1:{self._port}"

    @property
    def injected(self) -> Counter[Fault]:
        """How many times each fault was injected."""
        return Counter(r.fault for r in self.log if r.fault is not None)

    async def __aenter__(self) -> ChaosProxy:
        # No pooling towards the server: a dropped client connection must not leave a
        # half-used upstream one behind, and each request is counted once.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), auto_decompress=False
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _pick(self) -> Fault | None:
        if self.max_faults is not None and sum(self.injected.values()) >= self.max_faults:
            return None
        roll = self._rng.random()
        for fault, rate in self.rates.items():
            if roll < rate:
                return fault
            roll -= rate
        return None

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, Any, bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as answer:
            return answer.status, answer.headers, await answer.read()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._pick() if self._targets(request) else None
        forwarded = fault is None or fault in COMMITTED
        status: int | None = None
        headers: Any = {}
        payload = b""
        if fault is Fault.STALL:
            await asyncio.sleep(self.stall)
        if forwarded:
            status, headers, payload = await self._forward(request, body)
        self.log.append(ChaosRecord(request.method, request.path, fault, forwarded, status))
        if fault in (Fault.DROP_BEFORE, Fault.COMMIT_THEN_DROP):
            # Cut the connection with no answer at all (as a crashed gateway would).
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never written: the transport is gone
        if fault in _STATUS:
            extra = {"Retry-After": "1"} if fault is Fault.STATUS_429 else {}
            return web.Response(status=_STATUS[fault], text=f"chaos: {fault.value}", headers=extra)
        assert status is not None
        kept = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        return web.Response(status=status, body=payload, headers=kept)
