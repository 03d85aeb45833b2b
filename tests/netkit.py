"""Real local servers for testing proxy and TLS support: a forward proxy, a test CA, web servers.

Import it from tests as ``from netkit import ForwardProxy, tls_ca, serve_tls, serve_http``.
It knows nothing about aiocompute: it exists to drive a client's ``proxy=``,
``HTTPS_PROXY``/``HTTP_PROXY`` and ``verify=`` options against real sockets instead of mocks.

Everything binds to 127.0.0.1 on a free port, and the proxy refuses (403) any target that is
not loopback, so a test can never reach beyond this machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit

import trustme
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ForwardProxy",
    "LocalCA",
    "ProxyRequest",
    "RunningServer",
    "basic_auth",
    "serve_http",
    "serve_tls",
    "tls_ca",
]

LOOPBACK = "127.0.0.1"

# Hop-by-hop headers (RFC 9110 §7.6.1) concern only the client-proxy connection, so they are
# not forwarded. Transfer-Encoding is hop-by-hop too, but it stays: the proxy relays the body
# bytes untouched, so their framing must still be described to the server.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)

_CHUNK = 64 * 1024


# --------------------------------------------------------------------------- forward proxy


@dataclass(frozen=True)
class ProxyRequest:
    """One request as the proxy received it.

    ``target`` is exactly what the client asked for: ``host:port`` for CONNECT, the absolute
    URL (``http://127.0.0.1:8080/path?q``) for plain-HTTP forwarding. ``headers`` are the
    request headers the proxy saw, ``Proxy-Authorization`` included (case-insensitive keys).
    ``status`` is the status line the client got back: the proxy's own answer (200 for an
    established tunnel, 400, 403, 407, 502) or, for a forwarded request, the server's.
    """

    method: str
    target: str
    headers: CIMultiDictProxy[str]
    status: int


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1, for tests; supports CONNECT and plain forwarding.

    ::

        async with ForwardProxy(auth=("user", "pass")) as proxy:
            ...  # point the client at proxy.url_with_auth
            assert proxy.requests[0].method == "CONNECT"

    Credentials in the proxy URL reach the proxy for http and https targets alike; aiohttp
    sends ``proxy_headers`` on CONNECT only (see ``test_netkit.py``).

    Plain-HTTP forwarding handles one request per client connection: the proxy asks the server
    for ``Connection: close`` and tells the client the same, so every request opens a fresh
    connection and is recorded. That keeps the proxy a byte pipe after each request head (any
    body framing just works) at the cost of keep-alive, which a test does not need.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None) -> None:
        self.auth = auth
        self.requests: list[ProxyRequest] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without credentials."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url_with_auth(self) -> str:
        """``http://user:pass@127.0.0.1:PORT`` (percent-encoded); ``url`` when auth is unset."""
        if self.auth is None:
            return self.url
        user, password = (quote(part, safe="") for part in self.auth)
        return f"http://{user}:{password}@{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port (``async with`` calls this)."""
        self._closing = False
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, then cancel every open connection and wait until each has ended."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> ForwardProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- one client connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio runs this callback in its own task; keep it so close() can cancel it.
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if not self._closing:  # a connection accepted just as close() began
                await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing left to answer
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # close() cancelled this connection; end normally, because Python 3.11's
            # asyncio.streams logs a spurious error for a cancelled connection task.
        finally:
            self._handlers.discard(task)
            # Not awaited, so a second cancellation cannot interrupt the cleanup; the transport
            # closes on the next loop turn.
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        try:
            method, target, version = request_line.split(" ")
        except ValueError:
            await _reply(writer, 400, "Bad Request")
            return

        def record(status: int) -> None:
            self.requests.append(ProxyRequest(method, target, CIMultiDictProxy(headers), status))

        if not self._authorized(headers.get("Proxy-Authorization")):
            record(407)
            await _reply(
                writer,
                407,
                "Proxy Authentication Required",
                {"Proxy-Authenticate": 'Basic realm="test"'},
            )
            return

        host, port, origin_target = _split_target(method, target)
        if host is None or port is None:
            record(400)
            await _reply(writer, 400, "Bad Request", body=b"unsupported request target\n")
            return
        if not _is_loopback(host):
            # Workplace safety rule: a test proxy never opens a connection off this machine.
            record(403)
            await _reply(writer, 403, "Forbidden", body=b"only loopback targets are allowed\n")
            return

        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            record(502)
            await _reply(writer, 502, "Bad Gateway", body=b"could not connect to target\n")
            return
        try:
            if method == "CONNECT":
                record(200)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                downstream = _pipe(up_reader, writer)
            else:
                up_writer.write(_forward_head(method, origin_target, version, headers))
                await up_writer.drain()
                downstream = _forward_response(up_reader, writer, record)
            # The request body goes up while the response comes down: a server may wait for
            # the whole body before it answers, so the two must not be sequential.
            await _relay(_pipe(reader, up_writer), downstream)
        finally:
            await _close(up_writer)

    def _authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        expected = basic_auth(*self.auth).partition(" ")[2]
        return scheme.lower() == "basic" and credentials.strip() == expected


def basic_auth(user: str, password: str) -> str:
    """The ``Basic ...`` value of an (Proxy-)Authorization header.

    Built by hand so tests read the same on every aiohttp the project supports: from 3.14 on,
    ``aiohttp.BasicAuth`` warns that it is deprecated.
    """
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _parse_head(head: bytes) -> tuple[str, CIMultiDict[str]]:
    """Split a request or response head into its first line and its headers."""
    first, *lines = head.decode("latin-1").split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return first, headers


def _encode_head(first_line: str, headers: CIMultiDict[str]) -> bytes:
    lines = [first_line, *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _end_to_end(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """The headers minus hop-by-hop ones (and any named in Connection), plus Connection: close."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    kept = CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in _HOP_BY_HOP and name.lower() not in named
    )
    kept["Connection"] = "close"
    return kept


def _forward_head(
    method: str, origin_target: str, version: str, headers: CIMultiDict[str]
) -> bytes:
    return _encode_head(f"{method} {origin_target} {version}", _end_to_end(headers))


def _split_target(method: str, target: str) -> tuple[str | None, int | None, str]:
    """(host, port, origin-form target) of a CONNECT authority or an absolute http:// URL."""
    if method == "CONNECT":
        parts = urlsplit(f"//{target}")
        origin = ""
    else:
        parts = urlsplit(target)
        if parts.scheme != "http":
            return None, None, ""
        origin = parts.path or "/"
        if parts.query:
            origin += f"?{parts.query}"
    try:
        port = parts.port if method == "CONNECT" else (parts.port or 80)
    except ValueError:  # a port that is not a number
        return None, None, ""
    return parts.hostname, port, origin


def _is_loopback(host: str) -> bool:
    # No DNS lookup: only literal loopback addresses and the name "localhost" pass.
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _reply(
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> None:
    """Answer the client from the proxy itself; the connection is closed afterwards."""
    head = CIMultiDict(headers or {})
    head["Content-Length"] = str(len(body))
    head["Connection"] = "close"
    writer.write(_encode_head(f"HTTP/1.1 {status} {reason}", head) + body)
    await writer.drain()


async def _forward_response(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    record: Callable[[int], None],
) -> None:
    """Relay a server's response, its head rewritten to say Connection: close."""
    try:
        status_line, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
    except asyncio.IncompleteReadError:
        record(502)
        await _reply(writer, 502, "Bad Gateway", body=b"target closed without answering\n")
        return
    # Recorded before the client sees the answer, so a test never finds its request missing.
    record(int(status_line.split(" ")[1]))
    writer.write(_encode_head(status_line, _end_to_end(headers)))
    await writer.drain()
    await _pipe(reader, writer)


async def _relay(upstream: Awaitable[None], downstream: Awaitable[None]) -> None:
    """Run both directions until either ends; the caller then closes both connections."""
    pipes = [asyncio.ensure_future(upstream), asyncio.ensure_future(downstream)]
    try:
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also reached when the proxy is closing and cancels this handler.
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class LocalCA:
    """A throwaway certificate authority and a server certificate it signed.

    The server certificate is valid for ``127.0.0.1``, ``::1`` and ``localhost``. ``ca_file``
    is the CA certificate as PEM, what a client takes as ``verify="/path/ca.pem"``.
    """

    ca: trustme.CA
    ca_file: Path
    server_cert: trustme.LeafCert = field(repr=False)

    def server_context(self) -> ssl.SSLContext:
        """A fresh server-side context presenting the server certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextlib.contextmanager
def tls_ca() -> Iterator[LocalCA]:
    """Make a CA and a loopback server certificate; the CA PEM file is removed on exit.

    ``with tls_ca() as ca:`` works without pytest; a session-scoped fixture can wrap it, as the
    certificates never change during a test run.
    """
    ca = trustme.CA()
    server_cert = ca.issue_cert(LOOPBACK, "::1", "localhost")
    with tempfile.TemporaryDirectory(prefix="netkit-ca-") as directory:
        ca_file = Path(directory) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        yield LocalCA(ca=ca, ca_file=ca_file, server_cert=server_cert)


# --------------------------------------------------------------------------- web servers


@dataclass(frozen=True)
class RunningServer:
    """A running local web server: ``url`` has no trailing slash, so ``url + "/path"`` works."""

    url: str
    port: int
    ca: LocalCA | None = None

    @property
    def ca_file(self) -> Path | None:
        """The CA PEM that verifies this server (None for plain HTTP)."""
        return None if self.ca is None else self.ca.ca_file


@contextlib.asynccontextmanager
async def serve_http(app: web.Application) -> AsyncIterator[RunningServer]:
    """Run ``app`` over plain HTTP on 127.0.0.1 at a free port."""
    async with _run(app, None) as port:
        yield RunningServer(url=f"http://{LOOPBACK}:{port}", port=port)


@contextlib.asynccontextmanager
async def serve_tls(
    app: web.Application, ca: LocalCA | None = None
) -> AsyncIterator[RunningServer]:
    """Run ``app`` over HTTPS on 127.0.0.1 at a free port.

    Pass a ``LocalCA`` to share one across servers; without one, a new CA is made for this
    server and its file removed when the server stops.
    """
    with contextlib.ExitStack() as stack:
        if ca is None:
            ca = stack.enter_context(tls_ca())
        async with _run(app, ca.server_context()) as port:
            yield RunningServer(url=f"https://{LOOPBACK}:{port}", port=port, ca=ca)


@contextlib.asynccontextmanager
async def _run(app: web.Application, ssl_context: ssl.SSLContext | None) -> AsyncIterator[int]:
    # A short shutdown_timeout: a handler still running at the end of a test should not hold
    # the run for aiohttp's default 60 s.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0, ssl_context=ssl_context)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
