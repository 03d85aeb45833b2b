"""Real networks: redirects never followed, credentials kept out of error chains, outcome-unknown
launches, plain-http warnings, proxies (environment and ``proxy=``), TLS (``verify=``), and the
connection options every client takes, over real loopback sockets (``netkit``)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from anyio.from_thread import start_blocking_portal

from aiocompute import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    ETEngineClient,
    InsecureTransportWarning,
    NotFoundError,
    OutcomeUnknown,
    ProtocolError,
    QiskitRuntimeClient,
    RequestView,
    ResponseView,
    RetryPolicy,
    StreamDecodeError,
    Timeouts,
    TransportError,
    WorkbenchClient,
)
from aiocompute._core.auth import StaticAuth
from aiocompute._core.transport import Transport
from aiocompute._exceptions import redact_window, register_secret
from aiocompute.emulator import Emulator as _Emulator
from aiocompute.emulator import EmulatorConfig, ETEngineEmulatorConfig
from aiocompute.sync import ETEngineClient as SyncETEngineClient
from aiocompute.workbench import _protocol as WP
from helpers import make_emulator_on_loop_clock
from netkit import ForwardProxy, LocalCA, RunningServer, serve_http, serve_tls, tls_ca

pytestmark = pytest.mark.virtual_time

KEY = "et-key-5f0c2a9b7e41d3"  # a fake credential that must never leak
COOKIE = "rpc-cookie-1c9e4b7a2d"
IAM_KEY = "ibm-api-key-8d2f6a0b"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
NO_RETRY = RetryPolicy(max_attempts=1)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


def Emulator() -> _Emulator:
    """An emulator that knows this module's ET Engine key, on the loop's clock."""
    config = EmulatorConfig(etengine=ETEngineEmulatorConfig(api_keys={KEY: "user-1"}))
    return make_emulator_on_loop_clock(config=config)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine's own proxy settings must not steer these tests.
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture(scope="module")
def ca() -> Iterator[LocalCA]:
    with tls_ca() as made:
        yield made


class Recorder:
    """A web app that answers 200 ``{"ok": true}`` to anything and keeps what it saw."""

    def __init__(self, payload: Any = None) -> None:
        self.payload = {"ok": True} if payload is None else payload
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._any)

    async def _any(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), body))
        return web.json_response(self.payload, headers={"X-Request-Id": "req-42"})


def redirecting_to(target: str, status: int) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": f"{target}{request.path_qs}"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


def chain(error: BaseException) -> list[BaseException]:
    """The error and everything in its ``__cause__`` / ``__context__`` chain."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is None or any(item is seen for seen in found):
            continue
        found.append(item)
        todo += [item.__cause__, item.__context__]
    return found


def assert_no_secret_in_chain(error: BaseException, *secrets: str) -> None:
    for item in chain(error):
        texts = [str(item), repr(item), repr(getattr(item, "__dict__", {})), repr(item.args)]
        for secret in secrets:
            assert not any(secret in text for text in texts), (type(item).__name__, secret)


# -- redirects are never followed ------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_workbench_redirect_is_refused_and_nothing_reaches_the_other_origin(
    status: int,
) -> None:
    other = Recorder()
    async with (
        serve_http(other.app) as elsewhere,
        serve_http(redirecting_to(elsewhere.url, status)) as server,
        WorkbenchClient(server.url, rpc_cookie=COOKIE, retry=NO_RETRY) as wb,
    ):
        with pytest.raises(APIError) as info:
            await wb.users()
    assert other.seen == []  # not the cookie, not anything
    assert info.value.status == status
    assert elsewhere.url in str(info.value)
    assert "never follows redirects" in str(info.value)
    assert_no_secret_in_chain(info.value, COOKIE)


async def test_https_to_http_redirect_is_refused(ca: LocalCA) -> None:
    other = Recorder()
    async with (
        serve_http(other.app) as elsewhere,
        serve_tls(redirecting_to(elsewhere.url, 308), ca) as server,
        ETEngineClient(api_key=KEY, base_url=server.url, verify=str(ca.ca_file)) as et,
    ):
        with pytest.raises(APIError, match="redirects to 'http://"):
            await et.batches.create("tool", fixed_args={"environment": "secret-value"})
    assert other.seen == []


async def test_an_iam_redirect_does_not_carry_the_api_key_away() -> None:
    other = Recorder()
    async with (
        Emulator() as emu,
        serve_http(other.app) as elsewhere,
        serve_http(redirecting_to(elsewhere.url, 307)) as iam,
        QiskitRuntimeClient(
            token=IAM_KEY,
            instance=CRN,
            base_url=emu.qiskit_url,
            iam_url=f"{iam.url}/identity/token",
        ) as q,
    ):
        with pytest.raises(APIError) as info:
            await q.sessions.get("s-1")
    assert other.seen == []  # the form body with the key went nowhere
    assert_no_secret_in_chain(info.value, IAM_KEY)


async def test_a_stream_redirect_is_refused() -> None:
    other = Recorder()
    async with (
        serve_http(other.app) as elsewhere,
        serve_http(redirecting_to(elsewhere.url, 302)) as server,
        Transport(server.url, auth=StaticAuth.bearer(KEY)) as t,
    ):
        with pytest.raises(APIError, match="never follows redirects"):
            async with t.stream("GET", "/output"):
                pass
    assert other.seen == []


# -- credentials never ride along in an error's chain ----------------------------------------


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server that reads a request head, writes ``answer`` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n",  # a malformed response
        b"",  # hung up before answering
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":',  # body cut off
    ],
)
async def test_transport_errors_hold_no_credential_anywhere_in_their_chain(answer: bytes) -> None:
    async with (
        raw_server(answer) as url,
        Transport(url, auth=StaticAuth.bearer(KEY), retry=NO_RETRY) as t,
    ):
        with pytest.raises(TransportError) as info:
            await t.request("GET", "/x", idempotent=True)
    assert_no_secret_in_chain(info.value, KEY)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


async def test_a_bad_json_body_does_not_keep_the_body_in_the_chain() -> None:
    body = b'{"access_token": "' + KEY.encode() + b'", oops'
    async with (
        raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)) as url,
        Transport(url) as t,
    ):
        response = await t.request("GET", "/x", idempotent=True)
    with pytest.raises(ProtocolError) as info:
        response.json()
    assert info.value.__context__ is None  # the JSONDecodeError's .doc is the whole body
    assert_no_secret_in_chain(info.value, KEY)


# -- a create whose outcome is unknown -------------------------------------------------------


async def test_a_create_cut_off_after_sending_is_an_unknown_outcome_not_a_retry() -> None:
    async with (
        raw_server(b"") as url,
        ETEngineClient(api_key=KEY, base_url=url, retry=RetryPolicy(backoff_initial=0.001)) as et,
    ):
        with pytest.raises(OutcomeUnknown) as info:
            await et.batches.create("tool")
    error = info.value
    assert isinstance(error, TransportError)
    assert (error.retryable, error.outcome_unknown, error.sent) == (False, True, True)
    assert "look it up before trying again" in str(error)


# -- a credential over plain http ------------------------------------------------------------


def test_a_credential_over_plain_http_warns_once_per_client(mocked: aioresponses) -> None:
    mocked.get("http://et.example.com/v1/batches", payload=[], repeat=True)

    async def two_calls(url: str) -> None:
        async with ETEngineClient(api_key=KEY, base_url=url) as et:
            await et.batches.list()
            await et.batches.list()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(two_calls("http://et.example.com/v1"))
    insecure = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert len(insecure) == 1
    assert "et.example.com" in str(insecure[0].message)
    assert KEY not in str(insecure[0].message)


async def test_loopback_and_https_do_not_warn() -> None:
    async with Emulator() as emu:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InsecureTransportWarning)
            async with ETEngineClient(api_key=KEY, base_url=emu.etengine_url) as et:
                await et.batches.list()


# -- a closed client -------------------------------------------------------------------------


async def test_calls_and_waits_on_a_closed_client_raise_an_error_of_the_tree() -> None:
    async with Emulator() as emu:
        et = ETEngineClient(api_key=KEY, base_url=emu.etengine_url)
        await et.batches.list()
        await et.aclose()
        with pytest.raises(ClientClosedError, match="closed"):
            await et.batches.list()
        with pytest.raises(ClientClosedError):
            await et.batches.wait("b-1", timeout=1)
    assert issubclass(ClientClosedError, RuntimeError)


# -- proxies ---------------------------------------------------------------------------------


async def test_http_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Emulator() as emu, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        url = emu.etengine_url
        async with ETEngineClient(api_key=KEY, base_url=url) as et:
            assert await et.batches.list() == []
    assert [r.method for r in proxy.requests] == ["GET"]
    assert proxy.requests[0].target == f"{url}/batches"


async def test_https_proxy_from_the_environment_tunnels_to_a_verified_server(
    monkeypatch: pytest.MonkeyPatch, ca: LocalCA
) -> None:
    emu = Emulator()
    async with serve_tls(emu._build_app(), ca) as server, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        url = f"{server.url}/etengine/v1"
        async with ETEngineClient(api_key=KEY, base_url=url, verify=ca.ca_file) as et:
            assert await et.batches.list() == []
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("CONNECT", f"127.0.0.1:{server.port}")
    ]
    # The credential went inside the tunnel, never to the proxy.
    assert all(KEY not in str(dict(r.headers)) for r in proxy.requests)


async def test_explicit_proxy_with_credentials_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Emulator() as emu, ForwardProxy(auth=("me", "proxy-pass-77")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nobody listens there
        async with ETEngineClient(
            api_key=KEY, base_url=emu.etengine_url, proxy=proxy.url_with_auth
        ) as et:
            assert await et.batches.list() == []
            assert "proxy-pass-77" not in repr(et._transport)
    assert [r.status for r in proxy.requests] == [200]


async def test_wrong_proxy_credentials_fail_without_showing_them(ca: LocalCA) -> None:
    emu = Emulator()
    async with serve_tls(emu._build_app(), ca) as server, ForwardProxy(auth=("me", "right")) as p:
        bad = p.url_with_auth.replace("right", "wrong-pass-31")
        url = f"{server.url}/etengine/v1"
        async with ETEngineClient(api_key=KEY, base_url=url, proxy=bad, verify=ca.ca_file) as et:
            with pytest.raises(TransportError, match="proxy refused the connection") as info:
                await et.batches.list()
    assert_no_secret_in_chain(info.value, "wrong-pass-31", KEY)


async def test_trust_env_false_ignores_the_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Emulator() as emu, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with ETEngineClient(api_key=KEY, base_url=emu.etengine_url, trust_env=False) as et:
            await et.batches.list()
    assert proxy.requests == []


def test_a_bad_proxy_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="proxy must be an http"):
        ETEngineClient(api_key=KEY, base_url="https://et.example.com", proxy="socks5://h:1080")
    with pytest.raises(TypeError, match="proxy must be a URL string"):
        ETEngineClient(api_key=KEY, base_url="https://et.example.com", proxy=3128)  # type: ignore[call-arg]


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture
async def tls_server(ca: LocalCA) -> AsyncIterator[RunningServer]:
    async with serve_tls(Recorder().app, ca) as server:
        yield server


async def test_a_self_signed_server_is_refused_by_default(tls_server: RunningServer) -> None:
    async with Transport(tls_server.url) as t:
        with pytest.raises(TransportError, match="TLS") as info:
            await t.request("GET", "/x", idempotent=True)
    assert info.value.retryable is False


@pytest.mark.parametrize("form", ["str", "path", "context"])
async def test_verify_trusts_a_ca_bundle(tls_server: RunningServer, ca: LocalCA, form: str) -> None:
    verify: Any = {
        "str": str(ca.ca_file),
        "path": Path(ca.ca_file),
        "context": ssl.create_default_context(cafile=str(ca.ca_file)),
    }[form]
    async with Transport(tls_server.url, verify=verify) as t:
        assert (await t.request("GET", "/x", idempotent=True)).json() == {"ok": True}


async def test_verify_false_skips_verification(tls_server: RunningServer) -> None:
    async with Transport(tls_server.url, verify=False) as t:
        assert (await t.request("GET", "/x", idempotent=True)).status == 200


async def test_ssl_cert_file_is_honoured_only_with_trust_env(
    tls_server: RunningServer, ca: LocalCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    async with Transport(tls_server.url) as t:
        assert (await t.request("GET", "/x", idempotent=True)).status == 200
    async with Transport(tls_server.url, trust_env=False) as t:
        with pytest.raises(TransportError, match="TLS"):
            await t.request("GET", "/x", idempotent=True)


def test_a_verify_path_that_names_nothing_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CA bundle"):
        ETEngineClient(
            api_key=KEY, base_url="https://et.example.com", verify=str(tmp_path / "no.pem")
        )
    with pytest.raises(TypeError, match="verify must be"):
        ETEngineClient(api_key=KEY, base_url="https://et.example.com", verify=1)  # type: ignore[arg-type]


# -- headers, user agent, hooks, caller-owned sessions ---------------------------------------


async def test_extra_headers_never_override_the_credential() -> None:
    server = Recorder(payload=[])
    async with (
        serve_http(server.app) as http,
        ETEngineClient(
            api_key=KEY,
            base_url=http.url,
            headers={"X-Team": "blue", "Authorization": "not-the-key"},
            user_agent="my-tool/2.0",
        ) as et,
    ):
        await et.jobs.list("b-1")
    headers = server.seen[0][2]
    assert headers["X-Team"] == "blue"
    assert headers["Authorization"] == KEY
    assert headers["User-Agent"].startswith("aiocompute/")
    assert headers["User-Agent"].endswith(" my-tool/2.0")


async def test_event_hooks_see_redacted_views_and_may_be_async() -> None:
    seen: list[object] = []

    def on_request(view: RequestView) -> None:
        seen.append(view)

    async def on_response(view: ResponseView) -> None:
        await asyncio.sleep(0)
        seen.append(view)

    server = Recorder(payload=[])
    async with serve_http(server.app) as http:
        hooks = {"request": [on_request], "response": [on_response]}
        async with ETEngineClient(api_key=KEY, base_url=http.url, event_hooks=hooks) as et:
            await et.jobs.list("b-1")
    request, response = seen
    assert isinstance(request, RequestView)
    assert isinstance(response, ResponseView)
    assert (request.method, request.attempt) == ("GET", 1)
    assert request.url == f"{http.url}/batches/b-1/jobs"
    assert request.headers["Authorization"] == "***"
    assert response.status == 200
    assert response.request is request
    assert response.headers["X-Request-Id"] == "req-42"
    assert KEY not in repr(seen)
    with pytest.raises(TypeError):
        request.headers["Authorization"] = KEY  # type: ignore[index]


async def test_a_hook_that_raises_ends_the_call_with_its_error() -> None:
    def refuse(view: RequestView) -> None:
        raise PermissionError(f"no {view.method} today")

    server = Recorder()
    async with (
        serve_http(server.app) as http,
        ETEngineClient(api_key=KEY, base_url=http.url, event_hooks={"request": [refuse]}) as et,
    ):
        with pytest.raises(PermissionError, match="no GET today"):
            await et.jobs.list("b-1")
    assert server.seen == []


def test_bad_event_hooks_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        ETEngineClient(api_key=KEY, base_url="https://h", event_hooks={"reply": []})
    with pytest.raises(TypeError, match="is not callable"):
        ETEngineClient(api_key=KEY, base_url="https://h", event_hooks={"request": [42]})  # type: ignore[list-item]


def test_unknown_connection_options_name_the_client() -> None:
    with pytest.raises(TypeError, match=r"ETEngineClient\(\) got an unexpected keyword argument"):
        ETEngineClient(api_key=KEY, base_url="https://h", proxies="x")  # type: ignore[call-arg]


async def test_a_caller_owned_session_is_used_and_never_closed() -> None:
    sent: list[str] = []

    async def on_request_start(_s: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with Emulator() as emu, aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with ETEngineClient(
            api_key=KEY, base_url=emu.etengine_url, http_session=session
        ) as et:
            await et.batches.list()
        assert not session.closed
        assert sent == [f"{emu.etengine_url}/batches"]


# -- with_options ----------------------------------------------------------------------------


async def test_with_options_shares_the_pool_and_closes_independently() -> None:
    server = Recorder(payload=[])
    async with serve_http(server.app) as http:
        et = ETEngineClient(api_key=KEY, base_url=http.url)
        fast = et.with_options(timeouts=Timeouts(total=5), headers={"X-Call": "quick"})
        assert fast._transport._pool is et._transport._pool
        assert fast.batches is not et.batches
        await fast.jobs.list("b-1")
        await et.jobs.list("b-1")
        await fast.aclose()
        await et.jobs.list("b-1")  # the original is still open
        await et.aclose()
        with pytest.raises(ClientClosedError):
            await fast.jobs.list("b-1")  # and closing it closed the copy's connections
    assert [seen[2].get("X-Call") for seen in server.seen] == ["quick", None, None]
    assert fast._transport.timeouts.total == 5
    assert et._transport.timeouts.total == Timeouts().total


def test_with_options_of_a_sync_client() -> None:
    emu = Emulator()
    with start_blocking_portal() as portal:
        portal.call(emu.start)
        try:
            with SyncETEngineClient(api_key=KEY, base_url=emu.etengine_url) as et:
                check_sync_copy(et)
        finally:
            portal.call(emu.stop)


def check_sync_copy(et: SyncETEngineClient) -> None:
    quick = et.with_options(retry=NO_RETRY)
    assert quick.batches.list().all() == []
    quick.close()
    assert quick.closed
    assert not et.closed
    assert et.batches.list().all() == []
    with pytest.raises(ClientClosedError):
        quick.batches.list().all()


# -- what errors say -------------------------------------------------------------------------


async def test_api_errors_carry_the_request_id_and_redacted_headers() -> None:
    async def deny(_request: web.Request) -> web.Response:
        return web.Response(
            status=401,
            text="<html><title>401 Unauthorized</title><h1>401 Unauthorized</h1></html>",
            content_type="text/html",
            headers={"X-Request-Id": "abc-123", "Set-Cookie": f"s={KEY}"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deny)
    async with serve_http(app) as http, ETEngineClient(api_key=KEY, base_url=http.url) as et:
        with pytest.raises(AuthenticationError) as info:
            await et.batches.list()
    error = info.value
    assert error.request_id == "abc-123"
    assert error.headers["Set-Cookie"] == "***"
    text = str(error)
    # The status said once, not four times (the port in the URL may hold "401" too).
    assert text.replace(str(error.url), "").count("401") == 1, text
    assert "the api_key argument or $ET_ENGINE_API_KEY" in text
    assert "request id abc-123" in text
    assert_no_secret_in_chain(error, KEY)


async def test_workbench_overload_inside_a_200_body_is_retried_and_paced(
    mocked: aioresponses,
) -> None:
    statuses: list[int | None] = []

    class Governor:
        @contextlib.asynccontextmanager
        async def slot(self) -> AsyncIterator[None]:
            yield

        def feedback(self, status: int | None, retry_after: float | None) -> None:
            statuses.append(status)

    url = "https://wb.example.com/api/x"
    mocked.post(url, payload={"error": {"code": 503, "message": "busy"}})
    mocked.post(url, payload={"result": 1})
    async with Transport(
        "https://wb.example.com",
        body_error_parser=WP.transient_error_in_body,
        governor=Governor(),
        retry=RetryPolicy(backoff_initial=0.001, backoff_max=0.001),
    ) as t:
        response = await t.request("POST", "/api/x", json={}, idempotent=True)
    assert response.json() == {"result": 1}
    assert statuses == [503, 200]


def test_an_ordinary_rpc_error_is_left_to_the_envelope() -> None:
    body = b'{"error": {"code": 404, "message": "no such session"}}'
    assert WP.transient_error_in_body(200, body) is None
    assert WP.transient_error_in_body(200, b'{"result": {"error": 1}}') is None
    assert WP.transient_error_in_body(200, b'{"error": {"code": 429, "message": "slow"}}') == (
        429,
        "slow",
    )


async def test_not_found_errors_name_the_id_the_server_left_out() -> None:
    from aiocompute.emulator import EmulatorConfig as Config
    from aiocompute.emulator import QiskitEmulatorConfig

    config = Config(
        etengine=ETEngineEmulatorConfig(api_keys={KEY: "user-1"}),
        qiskit=QiskitEmulatorConfig(api_keys={IAM_KEY: "user-1"}, instances=frozenset({CRN})),
    )
    async with make_emulator_on_loop_clock(config=config) as emu:
        async with WorkbenchClient(emu.workbench_url, token="user-token") as wb:
            with pytest.raises(NotFoundError, match="job 'no-such-job' not found"):
                await wb.jobs.stop("no-such-job")
        async with QiskitRuntimeClient(
            token=IAM_KEY, instance=CRN, base_url=emu.qiskit_url, iam_url=emu.qiskit_iam_url
        ) as q:
            with pytest.raises(NotFoundError, match="session 'no-such-session' not found"):
                await q.sessions.get("no-such-session")


def test_a_credential_cut_by_an_excerpt_is_still_redacted() -> None:
    secret = "cut-secret-4b8e1f0a9c"
    register_secret(secret)
    assert "cut-secret" not in redact_window(f'{{"key": "{secret[:12]}')
    assert "4b8e1f0a9c" not in redact_window(f'{secret[-12:]}", "x": 1}}')
    assert redact_window("an ordinary text") == "an ordinary text"
    error = StreamDecodeError("cut off", offset=9, excerpt=f'"{secret[:15]}', truncated=True)
    assert secret[:15] not in str(error)


async def test_no_proxy_sends_matching_hosts_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Emulator() as emu, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        async with ETEngineClient(api_key=KEY, base_url=emu.etengine_url) as et:
            assert await et.batches.list() == []
    assert proxy.requests == []


def test_the_environment_is_read_when_the_client_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    et = ETEngineClient(api_key=KEY, base_url="https://et.example.com/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example:1")
    transport = et._transport
    assert str(transport._proxy_for("https://et.example.com/v1/batches")) == (
        "http://proxy.corp.example:3128"
    )
    assert transport._proxy_for("https://iam.internal.example/token") is None
    assert (
        ETEngineClient(api_key=KEY, base_url="https://x", trust_env=False)._transport._base_proxy
        is None
    )
