"""Tests of the netkit test kit itself, driven by plain aiohttp (no aiocompute).

They double as examples of how aiohttp takes a proxy (``proxy=``, ``HTTP(S)_PROXY`` with
``trust_env=True``) and a CA (``ssl=`` with an ``ssl.SSLContext``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from netkit import (
    ForwardProxy,
    LocalCA,
    RunningServer,
    basic_auth,
    serve_http,
    serve_tls,
    tls_ca,
)

pytestmark = pytest.mark.virtual_time

USER, PASSWORD = "user", "p@ss:word"  # characters that need percent-encoding in a URL
NOT_LOOPBACK = "198.51.100.1"  # TEST-NET-2: only ever sent to the proxy, which refuses it


def session(*, trust_env: bool = False) -> aiohttp.ClientSession:
    """A client session with a short timeout: a broken proxy fails a test rather than hang it."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5), trust_env=trust_env)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def headers(request: web.Request) -> web.Response:
    return web.json_response(dict(request.headers))


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on errors asyncio only logs (a failed connection task, an unretrieved exception)."""
    yield
    # Runs after the other fixtures' teardown (autouse fixtures are set up first), so servers
    # and proxies closed by fixtures are covered too.
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    errors = [r.getMessage() for r in records if r.name == "asyncio" and r.levelno >= 40]
    assert not errors


@pytest.fixture(scope="session")
def ca() -> Iterator[LocalCA]:
    with tls_ca() as made:
        yield made


@pytest.fixture
def app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/headers", headers)
    return app


@pytest.fixture
async def http_server(app: web.Application) -> AsyncIterator[RunningServer]:
    async with serve_http(app) as server:
        yield server


@pytest.fixture
async def tls_server(app: web.Application, ca: LocalCA) -> AsyncIterator[RunningServer]:
    async with serve_tls(app, ca) as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as running:
        yield running


@pytest.fixture
async def auth_proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy(auth=(USER, PASSWORD)) as running:
        yield running


# --------------------------------------------------------------------------- servers and CA


async def test_serve_tls_is_verified_by_its_ca_file(tls_server: RunningServer) -> None:
    assert tls_server.url == f"https://127.0.0.1:{tls_server.port}"
    assert tls_server.ca_file is not None
    context = ssl.create_default_context(cafile=str(tls_server.ca_file))
    async with session() as client, client.get(tls_server.url + "/hello", ssl=context) as resp:
        assert await resp.text() == "hello"


async def test_serve_tls_without_a_ca_makes_one_and_removes_its_file(app: web.Application) -> None:
    async with serve_tls(app) as server:
        assert server.ca is not None
        ca_file = server.ca_file
        assert ca_file is not None
        assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
        async with (
            session() as client,
            client.get(server.url + "/hello", ssl=server.ca.client_context()) as resp,
        ):
            assert resp.status == 200
    assert not ca_file.exists()


async def test_serve_http(http_server: RunningServer) -> None:
    assert http_server.ca_file is None
    async with session() as client, client.get(http_server.url + "/hello") as resp:
        assert await resp.text() == "hello"


# --------------------------------------------------------------------------- CONNECT and TLS


async def test_https_through_proxy_uses_connect_and_verifies_with_ca_file(
    proxy: ForwardProxy, tls_server: RunningServer
) -> None:
    context = ssl.create_default_context(cafile=str(tls_server.ca_file))
    async with (
        session() as client,
        client.get(tls_server.url + "/hello", proxy=proxy.url, ssl=context) as resp,
    ):
        assert await resp.text() == "hello"

    [record] = proxy.requests
    assert (record.method, record.target, record.status) == (
        "CONNECT",
        f"127.0.0.1:{tls_server.port}",
        200,
    )
    assert record.headers["host"] == f"127.0.0.1:{tls_server.port}"


async def test_https_through_proxy_without_the_ca_fails_certificate_check(
    proxy: ForwardProxy, tls_server: RunningServer
) -> None:
    async with session() as client:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.get(tls_server.url + "/hello", proxy=proxy.url)
    # The tunnel was built; it is the TLS handshake inside it that failed.
    assert [r.method for r in proxy.requests] == ["CONNECT"]


# --------------------------------------------------------------------------- plain HTTP


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_http_through_proxy_is_forwarded_in_absolute_form(
    proxy: ForwardProxy, http_server: RunningServer, host: str
) -> None:
    url = f"http://{host}:{http_server.port}/hello?x=1"
    async with session() as client, client.get(url, proxy=proxy.url) as resp:
        assert await resp.text() == "hello"

    [record] = proxy.requests
    assert (record.method, record.target, record.status) == ("GET", url, 200)


async def test_sequential_requests_on_a_pooled_session(
    proxy: ForwardProxy, http_server: RunningServer
) -> None:
    big = bytes(range(256)) * 1024  # larger than one read, so the body is piped in parts
    async with session() as client:
        for _ in range(3):
            async with client.get(http_server.url + "/hello", proxy=proxy.url) as resp:
                assert await resp.text() == "hello"
        async with client.post(http_server.url + "/echo", data=big, proxy=proxy.url) as resp:
            assert await resp.read() == big

        async def chunks() -> AsyncIterator[bytes]:
            yield b"chunked "
            yield b"body"

        async with client.post(http_server.url + "/echo", data=chunks(), proxy=proxy.url) as resp:
            assert await resp.read() == b"chunked body"

    assert [r.method for r in proxy.requests] == ["GET", "GET", "GET", "POST", "POST"]
    assert proxy.requests[-1].headers["transfer-encoding"] == "chunked"


async def test_forwarded_request_loses_proxy_and_hop_by_hop_headers(
    auth_proxy: ForwardProxy, http_server: RunningServer
) -> None:
    async with (
        session() as client,
        client.get(
            http_server.url + "/headers",
            proxy=auth_proxy.url_with_auth,
            headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-Kept": "2"},
        ) as resp,
    ):
        seen = {name.lower(): value for name, value in (await resp.json()).items()}

    assert "proxy-authorization" not in seen
    assert "x-hop" not in seen
    assert seen["x-kept"] == "2"
    assert seen["connection"] == "close"
    # ...while the record keeps what the client sent to the proxy.
    assert auth_proxy.requests[0].headers["proxy-authorization"].startswith("Basic ")


# --------------------------------------------------------------------------- environment


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables but the ones a test sets (urllib reads both cases, lowercase first)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    # urllib ignores HTTP_PROXY when REQUEST_METHOD is set (the CGI "httpoxy" guard).
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


@pytest.mark.parametrize("with_auth", [False, True], ids=["no-auth", "auth-in-url"])
async def test_trust_env_reads_http_and_https_proxy(
    clean_proxy_env: pytest.MonkeyPatch,
    with_auth: bool,
    http_server: RunningServer,
    tls_server: RunningServer,
) -> None:
    async with ForwardProxy(auth=(USER, PASSWORD) if with_auth else None) as proxy:
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url_with_auth)
        clean_proxy_env.setenv("HTTPS_PROXY", proxy.url_with_auth)
        context = ssl.create_default_context(cafile=str(tls_server.ca_file))
        async with session(trust_env=True) as client:
            async with client.get(http_server.url + "/hello") as resp:
                assert resp.status == 200
            async with client.get(tls_server.url + "/hello", ssl=context) as resp:
                assert resp.status == 200

    assert [(r.method, r.status) for r in proxy.requests] == [("GET", 200), ("CONNECT", 200)]


async def test_no_proxy_bypasses_the_env_proxy(
    clean_proxy_env: pytest.MonkeyPatch, proxy: ForwardProxy, http_server: RunningServer
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    async with session(trust_env=True) as client, client.get(http_server.url + "/hello") as resp:
        assert resp.status == 200
    assert proxy.requests == []


# --------------------------------------------------------------------------- proxy auth


async def test_http_without_credentials_gets_407(
    auth_proxy: ForwardProxy, http_server: RunningServer
) -> None:
    async with session() as client, client.get(http_server.url, proxy=auth_proxy.url) as resp:
        assert resp.status == 407
        assert resp.headers["Proxy-Authenticate"] == 'Basic realm="test"'
    [record] = auth_proxy.requests
    assert record.status == 407
    assert "proxy-authorization" not in record.headers


async def test_https_without_credentials_fails_connect_with_407(
    auth_proxy: ForwardProxy, tls_server: RunningServer, ca: LocalCA
) -> None:
    async with session() as client:
        with pytest.raises(aiohttp.ClientHttpProxyError) as caught:
            await client.get(tls_server.url, proxy=auth_proxy.url, ssl=ca.client_context())
    assert caught.value.status == 407
    assert [(r.method, r.status) for r in auth_proxy.requests] == [("CONNECT", 407)]


async def test_wrong_credentials_get_407(
    auth_proxy: ForwardProxy, http_server: RunningServer
) -> None:
    wrong = basic_auth(USER, "nope")
    async with (
        session() as client,
        client.get(
            http_server.url + "/hello",
            proxy=auth_proxy.url,
            proxy_headers={"Proxy-Authorization": wrong},
        ) as resp,
    ):
        assert resp.status == 407


async def test_credentials_in_the_proxy_url_pass(
    auth_proxy: ForwardProxy, http_server: RunningServer, tls_server: RunningServer, ca: LocalCA
) -> None:
    async with session() as client:
        async with client.get(http_server.url + "/hello", proxy=auth_proxy.url_with_auth) as resp:
            assert resp.status == 200
        async with client.get(
            tls_server.url + "/hello", proxy=auth_proxy.url_with_auth, ssl=ca.client_context()
        ) as resp:
            assert resp.status == 200
    assert [(r.method, r.status) for r in auth_proxy.requests] == [("GET", 200), ("CONNECT", 200)]
    assert {r.headers["Proxy-Authorization"] for r in auth_proxy.requests} == {
        basic_auth(USER, PASSWORD)
    }


async def test_aiohttp_sends_proxy_headers_on_connect_only(
    auth_proxy: ForwardProxy, http_server: RunningServer, tls_server: RunningServer, ca: LocalCA
) -> None:
    """aiohttp puts ``proxy_headers`` on the CONNECT request, not on a forwarded http request.

    A client that passes proxy credentials only as ``proxy_headers`` (as aiohttp 3.14's
    deprecation warning for ``proxy_auth`` suggests) gets 407 for http:// targets
    (aio-libs/aiohttp#4422). Credentials in the proxy URL reach both; see the test above.
    """
    credentials = {"Proxy-Authorization": basic_auth(USER, PASSWORD)}
    async with session() as client:
        async with client.get(
            tls_server.url + "/hello",
            proxy=auth_proxy.url,
            proxy_headers=credentials,
            ssl=ca.client_context(),
        ) as resp:
            assert resp.status == 200
        async with client.get(
            http_server.url + "/hello", proxy=auth_proxy.url, proxy_headers=credentials
        ) as resp:
            assert resp.status == 407


# --------------------------------------------------------------------------- safety and shutdown


async def test_non_loopback_http_target_is_refused(proxy: ForwardProxy) -> None:
    # aiohttp connects only to the proxy; the proxy must answer without connecting onwards.
    async with (
        session() as client,
        client.get(f"http://{NOT_LOOPBACK}/", proxy=proxy.url) as resp,
    ):
        assert resp.status == 403
    assert [(r.target, r.status) for r in proxy.requests] == [(f"http://{NOT_LOOPBACK}/", 403)]


async def test_non_loopback_https_target_is_refused(proxy: ForwardProxy) -> None:
    async with session() as client:
        with pytest.raises(aiohttp.ClientHttpProxyError) as caught:
            await client.get(f"https://{NOT_LOOPBACK}/", proxy=proxy.url)
    assert caught.value.status == 403


async def raw_request(proxy: ForwardProxy, head: str) -> bytes:
    """Send a request head straight to the proxy; return its answer up to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(head.encode())
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "target",
    [
        "example.invalid:443",
        "127.0.0.1.example.invalid:443",
        "[2001:db8::1]:443",
        f"{NOT_LOOPBACK}:80",
    ],
)
async def test_non_loopback_connect_targets_are_refused(proxy: ForwardProxy, target: str) -> None:
    answer = await raw_request(proxy, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize(
    "head",
    [
        "NONSENSE\r\n\r\n",
        "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",  # no port
        "GET /origin-form HTTP/1.1\r\n\r\n",  # not a proxy request
        "GET ftp://127.0.0.1/ HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400(proxy: ForwardProxy, head: str) -> None:
    assert (await raw_request(proxy, head)).startswith(b"HTTP/1.1 400 ")


async def test_unreachable_loopback_target_gets_502(proxy: ForwardProxy) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    answer = await raw_request(proxy, "CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 ")


async def test_close_ends_open_tunnels(http_server: RunningServer) -> None:
    async with ForwardProxy() as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(f"CONNECT 127.0.0.1:{http_server.port} HTTP/1.1\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        # The tunnel stays open and idle until the proxy shuts down.
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
        await writer.wait_closed()
