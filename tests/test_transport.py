"""Edge layer: the aiohttp transport against aioresponses, plus a small loopback server
(aiohttp.web on 127.0.0.1) for what a mock cannot show: real connects, streams, stalls,
connection release and garbage collection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import socket
import ssl
import warnings
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import anyio
import pytest
from aiohttp import web
from aioresponses import aioresponses
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from aiocompute import _exceptions
from aiocompute._core.auth import NoAuth, StaticAuth
from aiocompute._core.http_config import PoolLimits, Timeouts, default_user_agent
from aiocompute._core.protocol_kit import Request
from aiocompute._core.responses import ByteStream, Response
from aiocompute._core.retries import NO_RETRY, RetryPolicy
from aiocompute._core.transport import Transport
from aiocompute._exceptions import (
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknown,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    redact,
    register_secret,
)

pytestmark = pytest.mark.virtual_time

BASE = "https://api.example.com/api"
TOKEN = "sk-live-7f3e9a1b2c4d5e6f"  # a fake credential that must never leak
RAW_KEY = "etk_0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, backoff_initial=0.001, backoff_max=0.002)

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "<script>var x = '<b>';</script></body>\r\n</html>\r\n"
)


# ---------------------------------------------------------------- fixtures


class Recorder:
    """Fake sleep (records the waits asked for) and retry hook."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.retries: list[tuple[int, BaseException, float]] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.retries.append((attempt, error, delay))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def transport(rec: Recorder) -> AsyncIterator[Transport]:
    t = Transport(BASE, auth=StaticAuth.bearer(TOKEN), retry=FAST, on_retry=rec.on_retry)
    t._sleep = rec.sleep
    async with t:
        yield t


def calls(m: aioresponses, method: str, url: str) -> int:
    return len(m.requests.get((method, URL(url)), []))


def sent_kwargs(m: aioresponses, method: str, url: str, index: int = 0) -> dict[str, Any]:
    return m.requests[(method, URL(url))][index].kwargs  # type: ignore[no-any-return]


# ---------------------------------------------------------------- configuration


def test_timeouts_validation() -> None:
    assert Timeouts() == Timeouts(connect=10.0, read=60.0, total=60.0, stall=60.0)
    assert Timeouts(connect=None, read=None, total=None).total is None
    with pytest.raises(ValueError, match="stall"):
        Timeouts(stall=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect"):
        Timeouts(connect=-1)
    with pytest.raises(ValueError, match="total"):
        Timeouts(total=0)
    with pytest.raises(TypeError, match="read"):
        Timeouts(read="60")  # type: ignore[arg-type]


def test_pool_limits_validation() -> None:
    assert PoolLimits() == PoolLimits(100, 0, 15.0)
    with pytest.raises(ValueError, match="max_connections"):
        PoolLimits(max_connections=-1)
    with pytest.raises(TypeError, match="max_connections_per_host"):
        PoolLimits(max_connections_per_host=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive_timeout"):
        PoolLimits(keepalive_timeout=0)


@pytest.mark.parametrize("bad", ["api.example.com", "ftp://x/y", "https://", "https://h/a?x=1"])
def test_bad_base_url_is_refused_clearly(bad: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        Transport(bad)


def test_repr_shows_base_url_only() -> None:
    t = Transport(BASE, auth=StaticAuth.bearer(TOKEN), headers={"X-Api-Key": RAW_KEY})
    assert repr(t) == f"Transport(base_url={BASE!r})"
    auth = StaticAuth({"Authorization": RAW_KEY})
    assert RAW_KEY not in repr(auth)
    assert "Authorization" in repr(auth)
    assert repr(NoAuth()) == "NoAuth()"


def test_user_agent_format() -> None:
    ua = default_user_agent()
    assert ua.startswith("aiocompute/")
    assert " python/3." in ua
    assert f" aiohttp/{aiohttp.__version__}" in ua


# ---------------------------------------------------------------- status mapping


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (409, ConflictError),
        (400, APIError),
    ],
)
async def test_status_mapping(
    transport: Transport, mocked: aioresponses, status: int, kind: type[APIError]
) -> None:
    mocked.get(f"{BASE}/v1/thing", status=status, body="nope", content_type="text/plain")
    with pytest.raises(kind) as info:
        await transport.request("GET", "/v1/thing", idempotent=True, retry=NO_RETRY)
    err = info.value
    assert type(err) is kind
    assert err.status == status
    assert err.method == "GET"
    assert err.url == f"{BASE}/v1/thing"
    assert f"HTTP {status}" in str(err)
    assert "nope" in err.message


async def test_429_retry_after_is_exposed(transport: Transport, mocked: aioresponses) -> None:
    mocked.get(f"{BASE}/x", status=429, headers={"Retry-After": "7"}, body="slow down")
    with pytest.raises(RateLimitError) as info:
        await transport.request("GET", "x", idempotent=True, retry=NO_RETRY)
    assert info.value.retry_after == 7.0


async def test_html_502_from_a_proxy_is_a_server_error_with_an_excerpt(
    transport: Transport, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/x", status=502, body=NGINX_502, content_type="text/html")
    with pytest.raises(ServerError) as info:
        await transport.request("GET", "x", idempotent=True, retry=NO_RETRY)
    err = info.value
    assert err.message.startswith("HTTP 502 Bad Gateway")
    assert "502 Bad Gateway" in err.body
    assert "nginx/1.25.3" in err.body
    assert "<" not in err.body  # tags stripped, script dropped
    assert "var x" not in err.body


async def test_error_parser_supplies_code_and_message(rec: Recorder, mocked: aioresponses) -> None:
    def parser(status: int, body: bytes, headers: Any) -> tuple[Any, str] | None:
        data = json.loads(body)
        if "errors" in data:
            return data["errors"][0]["code"], data["errors"][0]["message"]
        return None

    async with Transport(BASE, error_parser=parser) as t:
        mocked.get(
            f"{BASE}/a",
            status=400,
            payload={"errors": [{"code": 1217, "message": "Session has expired"}]},
        )
        mocked.get(f"{BASE}/b", status=400, payload={"other": "shape"})
        with pytest.raises(APIError) as info:
            await t.request("GET", "a", idempotent=True)
        assert (info.value.code, info.value.message) == (1217, "Session has expired")
        with pytest.raises(APIError) as info:
            await t.request("GET", "b", idempotent=True)
        assert info.value.code is None
        assert info.value.message.startswith("HTTP 400 Bad Request")


async def test_a_crashing_error_parser_does_not_hide_the_http_error(
    mocked: aioresponses,
) -> None:
    def parser(status: int, body: bytes, headers: Any) -> tuple[Any, str] | None:
        return json.loads(body)["error"]  # type: ignore[no-any-return]  # HTML: JSONDecodeError

    async with Transport(BASE, error_parser=parser, retry=NO_RETRY) as t:
        mocked.get(f"{BASE}/x", status=503, body=NGINX_502, content_type="text/html")
        with pytest.raises(ServerError) as info:
            await t.request("GET", "x", idempotent=True)
    assert info.value.status == 503


# ---------------------------------------------------------------- 2xx bodies


async def test_response_json_and_text(transport: Transport, mocked: aioresponses) -> None:
    mocked.get(f"{BASE}/ok", payload={"a": [1, 2]}, headers={"X-Request-Id": "r1"})
    r = await transport.request("GET", "ok", idempotent=True)
    assert isinstance(r, Response)
    assert r.status == 200
    assert r.json() == {"a": [1, 2]}
    assert r.text == '{"a": [1, 2]}'
    assert r.headers["x-request-id"] == "r1"  # case-insensitive
    assert "bytes" in repr(r)
    assert "[1, 2]" not in repr(r)  # bodies (maybe tokens) never in the repr
    assert "[1, 2]" not in str(r)
    assert "[1, 2]" not in f"{r}"


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        ("", "application/json", "empty"),
        ("   \n", "application/json", "empty"),
        ('{"a": ', "application/json", "invalid"),
        ("<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", "HTML"),
        ("\xff\xfe garbage", "application/json", "invalid"),
    ],
)
async def test_bad_json_in_a_200_is_a_protocol_error(
    transport: Transport, mocked: aioresponses, body: str, content_type: str, words: str
) -> None:
    mocked.get(f"{BASE}/x", status=200, body=body, content_type=content_type)
    r = await transport.request("GET", "x", idempotent=True)
    with pytest.raises(ProtocolError, match=words) as info:
        r.json()
    err = info.value
    assert err.status == 200
    assert "HTTP 200" in str(err)
    if body.strip():
        assert err.body  # a short excerpt of what came back
        assert len(err.body) <= 200
    assert not isinstance(err.__cause__, json.JSONDecodeError)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
JSON_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]


@given(JSON_VALUES, st.sampled_from(JSON_ENCODINGS), st.booleans())
def test_response_json_reads_what_json_loads_reads(
    value: Any, encoding: str, ascii_only: bool
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    r = Response(status=200, headers={}, body=body, method="GET", url=BASE)
    assert json.dumps(r.json()) == json.dumps(json.loads(body)) == json.dumps(value)


@given(st.binary(max_size=24) | st.text(max_size=12).map(lambda t: t.encode("utf-8", "replace")))
@example(b'"\xed\xa0\x80"')  # a lone surrogate, which json.loads lets through
@example(b"\xef\xbb\xbf[1]")  # a UTF-8 BOM
@example(b"NaN")
def test_response_json_agrees_with_json_loads_on_any_body(body: bytes) -> None:
    try:
        expected: Any = ("value", json.dumps(json.loads(body)))
    except (ValueError, RecursionError):
        expected = ("error", None)
    r = Response(status=200, headers={}, body=body, method="GET", url=BASE)
    try:
        got: Any = ("value", json.dumps(r.json()))
    except ProtocolError:
        got = ("error", None)
    assert got == expected


async def test_204_gives_an_empty_response(transport: Transport, mocked: aioresponses) -> None:
    mocked.patch(f"{BASE}/s/1", status=204, body="")
    r = await transport.request("PATCH", "s/1", json={"accepting_jobs": False}, idempotent=True)
    assert (r.status, r.body) == (204, b"")


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [502, 503, 504, 429])
async def test_idempotent_calls_are_retried(
    transport: Transport, mocked: aioresponses, rec: Recorder, status: int
) -> None:
    url = f"{BASE}/x"
    for _ in range(3):
        mocked.get(url, status=status, body="busy")
    mocked.get(url, payload={"ok": True})
    r = await transport.request("GET", "x", idempotent=True)
    assert r.json() == {"ok": True}
    assert calls(mocked, "GET", url) == 4
    assert len(rec.sleeps) == 3
    assert [a for a, _, _ in rec.retries] == [1, 2, 3]


async def test_retries_give_up_with_the_last_error(
    transport: Transport, mocked: aioresponses
) -> None:
    url = f"{BASE}/x"
    mocked.get(url, status=503, body="busy", repeat=True)
    with pytest.raises(ServerError):
        await transport.request("GET", "x", idempotent=True)
    assert calls(mocked, "GET", url) == FAST.max_attempts


async def test_a_later_error_is_not_chained_to_the_first_try(
    transport: Transport, mocked: aioresponses
) -> None:
    # The first try runs outside the retry driver: what a retry raises must not read as
    # raised "during handling of" the first error.
    url = f"{BASE}/x"
    mocked.get(url, status=503, body="busy")
    mocked.get(url, status=404, body="gone")
    with pytest.raises(NotFoundError) as info:
        await transport.request("GET", "x", idempotent=True)
    assert info.value.__context__ is None
    assert calls(mocked, "GET", url) == 2


async def test_retry_after_is_honoured(
    transport: Transport, mocked: aioresponses, rec: Recorder
) -> None:
    url = f"{BASE}/x"
    mocked.get(url, status=429, headers={"Retry-After": "3"})
    mocked.get(url, payload={})
    await transport.request("GET", "x", idempotent=True)
    assert rec.sleeps == [3.0]


async def test_no_retry_of_a_launch_on_503(
    transport: Transport, mocked: aioresponses, rec: Recorder
) -> None:
    url = f"{BASE}/launch"
    mocked.post(url, status=503, body="maintenance", repeat=True)
    # A 503 may come from a gateway after the server took the launch: not a plain "no".
    with pytest.raises(OutcomeUnknown) as info:
        await transport.request("POST", "launch", json={"n": 1}, idempotent=False)
    assert (info.value.status, info.value.timed_out) == (503, False)
    assert "HTTP 503" in str(info.value)
    assert "maintenance" in str(info.value)
    assert calls(mocked, "POST", url) == 1
    assert rec.sleeps == []


async def test_a_launch_refused_with_500_or_4xx_is_a_plain_api_error(
    transport: Transport, mocked: aioresponses
) -> None:
    url = f"{BASE}/launch"
    mocked.post(url, status=500, body="boom")
    with pytest.raises(ServerError) as info:
        await transport.request("POST", "launch", json={"n": 1}, idempotent=False)
    assert not isinstance(info.value, OutcomeUnknown)


async def test_send_follows_the_requests_idempotence(
    transport: Transport, mocked: aioresponses, rec: Recorder
) -> None:
    # A _protocol Request goes out with its method, path, query and JSON body, and its
    # idempotence decides the retries, as with request().
    read = Request("GET", "/v1/items", params={"limit": 2, "marker": None}, idempotent=True)
    mocked.get(f"{BASE}/v1/items?limit=2", status=503, body="busy")
    mocked.get(f"{BASE}/v1/items?limit=2", payload={"items": []})
    assert (await transport.send(read)).json() == {"items": []}
    launch = Request("POST", "/v1/launch", body={"n": 1}, idempotent=False)
    mocked.post(f"{BASE}/v1/launch", status=503, body="maintenance", repeat=True)
    with pytest.raises(OutcomeUnknown):
        await transport.send(launch)
    assert calls(mocked, "POST", f"{BASE}/v1/launch") == 1
    sent = mocked.requests[("POST", URL(f"{BASE}/v1/launch"))][0]
    assert sent.kwargs["data"] == b'{"n":1}'
    assert len(rec.sleeps) == 1  # the read's one retry


async def test_no_retry_of_a_launch_after_a_dropped_connection(
    transport: Transport, mocked: aioresponses
) -> None:
    url = f"{BASE}/launch"
    mocked.post(url, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(TransportError) as info:
        await transport.request("POST", "launch", json={}, idempotent=False)
    # The launch may have happened: "retryable" would invite a duplicate.
    assert isinstance(info.value, OutcomeUnknown)
    assert info.value.sent is True
    assert info.value.retryable is False
    assert info.value.outcome_unknown is True
    assert "may have received this POST" in str(info.value)
    assert "look it up before trying again" in str(info.value)
    assert calls(mocked, "POST", url) == 1


async def test_a_launch_that_surely_never_left_is_not_an_unknown_outcome(
    transport: Transport, mocked: aioresponses
) -> None:
    url = f"{BASE}/launch"
    error = aiohttp.ClientConnectorError(mock.Mock(), OSError(111, "Connection refused"))
    mocked.post(url, exception=error, repeat=True)
    with pytest.raises(TransportError) as info:
        await transport.request("POST", "launch", json={}, idempotent=False)
    assert not isinstance(info.value, OutcomeUnknown)
    assert (info.value.sent, info.value.outcome_unknown) == (False, False)


async def test_reads_are_retried_after_a_dropped_connection(
    transport: Transport, mocked: aioresponses
) -> None:
    url = f"{BASE}/x"
    mocked.get(url, exception=aiohttp.ServerDisconnectedError())
    mocked.get(url, exception=aiohttp.ClientPayloadError("cut"))
    mocked.get(url, payload=[1])
    assert (await transport.request("GET", "x", idempotent=True)).json() == [1]
    assert calls(mocked, "GET", url) == 3


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def test_a_launch_is_retried_when_the_connection_is_refused(rec: Recorder) -> None:
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.001)
    async with Transport(
        f"http://127.0.0.1:{closed_port()}", retry=policy, on_retry=rec.on_retry
    ) as t:
        with pytest.raises(TransportError) as info:
            await t.request("POST", "/launch", json={"x": 1}, idempotent=False)
    err = info.value
    assert err.sent is False
    assert err.retryable is True
    assert "cannot connect" in err.message
    assert [a for a, _, _ in rec.retries] == [1, 2]  # 3 attempts in all


@pytest.mark.parametrize(
    ("exc", "sent", "retryable", "words"),
    [
        (asyncio.TimeoutError(), True, True, "timed out"),
        (aiohttp.ServerTimeoutError("read"), True, True, "timed out"),
        (ssl.SSLError(1, "certificate verify failed"), True, False, "TLS"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True, True, "connection"),
        (aiohttp.TooManyRedirects(None, (), message="redirects"), True, False, "HTTP response"),  # type: ignore[arg-type]
        (
            aiohttp.TooManyRedirects(
                aiohttp.RequestInfo(URL(BASE), "GET", CIMultiDictProxy(CIMultiDict()), URL(BASE)),
                (),
                message="too many",
            ),
            True,
            False,
            "too many",
        ),
    ],
)
async def test_client_errors_become_transport_errors(
    transport: Transport,
    mocked: aioresponses,
    exc: BaseException,
    sent: bool,
    retryable: bool,
    words: str,
) -> None:
    mocked.get(f"{BASE}/x", exception=exc)
    with pytest.raises(TransportError, match=words) as info:
        await transport.request("GET", "x", idempotent=True, retry=NO_RETRY)
    assert (info.value.sent, info.value.retryable) == (sent, retryable)
    assert info.value.method == "GET"


# ---------------------------------------------------------------- credentials


async def test_token_never_in_errors_even_when_echoed(
    transport: Transport, mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {
        "error": f"invalid token {TOKEN}",
        "request": {"headers": {"Authorization": f"Bearer {TOKEN}"}},
    }
    mocked.get(f"{BASE}/a", status=401, payload=echo)
    mocked.get(f"{BASE}/b", status=503, body=f"upstream said: {TOKEN}", repeat=True)
    mocked.get(f"{BASE}/c", exception=aiohttp.ClientOSError(f"reset: Bearer {TOKEN}"))
    mocked.get(f"{BASE}/d", status=200, body=f"<html>Authorization: Bearer {TOKEN}")
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="aiocompute"):
        for path in ("a", "b", "c"):
            with pytest.raises((APIError, TransportError)) as info:
                await transport.request("GET", path, idempotent=True, retry=NO_RETRY)
            errors.append(info.value)
        r = await transport.request("GET", "d", idempotent=True)
        with pytest.raises(ProtocolError) as pinfo:
            r.json()
        errors.append(pinfo.value)
    for err in errors:
        texts = [str(err), repr(err), *map(str, vars(err).values()), *map(str, err.args)]
        assert not [t for t in texts if TOKEN in t], type(err)
    # The request did carry the token, yet the log never shows it (nor any header).
    assert sent_kwargs(mocked, "GET", f"{BASE}/a")["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert caplog.records
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]
    assert not [r for r in caplog.records if "Authorization" in r.getMessage()]


async def test_credentials_in_urls_are_redacted(mocked: aioresponses) -> None:
    async with Transport("https://user:hunter2-pass@api.example.com/api") as t:
        mocked.get(re.compile(r"^https://.*/api/x\?api_key="), status=404, body="gone")
        mocked.get(
            re.compile(r"^https://.*/api/y"),
            exception=aiohttp.ClientOSError(
                f"reset: https://user:hunter2-pass@api.example.com/api/y?api_key={RAW_KEY}"
            ),
        )
        with pytest.raises(NotFoundError) as info:
            await t.request("GET", "x", params={"api_key": RAW_KEY}, idempotent=True)
        assert "hunter2" not in repr(t)
        with pytest.raises(TransportError) as tinfo:
            await t.request(
                "GET", "y", params={"api_key": RAW_KEY}, idempotent=True, retry=NO_RETRY
            )
        for text in (str(tinfo.value), repr(tinfo.value)):
            assert "hunter2" not in text
            assert RAW_KEY not in text
    assert info.value.url is not None
    assert info.value.url.startswith("https://api.example.com/api/x?api_key=")
    assert RAW_KEY not in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_response_url_has_no_user_info(mocked: aioresponses) -> None:
    async with Transport("https://user:hunter2-pass@api.example.com/api") as t:
        mocked.get(re.compile(r"^https://.*/api/ok"), payload={}, repeat=True)
        first = await t.request("GET", "ok", idempotent=True)
        second = await t.request("GET", "ok", idempotent=True)
    assert first.url == second.url == "https://api.example.com/api/ok"


async def test_raw_api_key_never_in_errors(mocked: aioresponses) -> None:
    async with Transport(BASE, auth=StaticAuth({"Authorization": RAW_KEY})) as t:
        mocked.get(f"{BASE}/x", status=403, body=f"Access denied for key {RAW_KEY}")
        with pytest.raises(AuthenticationError) as info:
            await t.request("GET", "x", idempotent=True)
    assert RAW_KEY not in str(info.value)
    assert RAW_KEY not in repr(info.value)
    assert RAW_KEY not in info.value.body


async def test_refreshed_tokens_from_a_provider_are_redacted_too(mocked: aioresponses) -> None:
    class Refreshing:
        def __init__(self) -> None:
            self.n = 0

        async def headers(self) -> dict[str, str]:
            self.n += 1
            return {"Authorization": f"Bearer iam-token-number-{self.n:04d}"}

    auth = Refreshing()
    async with Transport(BASE, auth=auth) as t:
        mocked.get(f"{BASE}/x", status=401, body="bad: iam-token-number-0001")
        with pytest.raises(AuthenticationError) as info:
            await t.request("GET", "x", idempotent=True)
    assert auth.n == 1
    assert "iam-token-number-0001" not in str(info.value)


# Every request's URL goes through redact(), which skips its regexes for text that cannot
# match them and remembers short clean texts. It must still give what the regexes give.

REDACT_SECRET = "registered-secret-3f9c1d"
register_secret(REDACT_SECRET)


def redact_reference(text: str) -> str:
    """redact() as the regexes alone define it."""
    text = _exceptions._URL_USERINFO.sub(r"\1***@", text)
    for secret in _exceptions._known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern in _exceptions._SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


REDACT_PIECES = st.sampled_from(
    [
        "https://", "http://h.example:8443", "/api/get_session", "?", "&", "=", "@", ":",
        "user:pw@", "token", "TOKEN", "api_key", "Api-Key", "apikey", "password", "secret",
        "cookie", "Authorization", "authorization: ", "Bearer ", "bearer ", "basic ", "\"",
        "id_token", "access_token=", " ", "\n", "abc123", "x", "ſecret=", "K", "tоken",
        "\u212aey=", "é", REDACT_SECRET, "registered", "-secret",
    ]
)  # fmt: skip


@given(st.lists(REDACT_PIECES, max_size=12).map("".join))
@example("https://user:pw@h.example/api?x=1")
@example("ſecret=abc and \u212aey=v")
@example(f"http://h/{REDACT_SECRET}/x")
@example("Authorization: Basic abc, cookie=1")
def test_redact_gives_what_its_regexes_give(text: str) -> None:
    expected = redact_reference(text)
    assert redact(text) == expected
    assert redact(text) == expected  # the second time may come from the clean-text cache


def test_a_clean_text_is_redacted_once_its_secret_is_registered() -> None:
    url = "https://api.example.com/api/jobs/run-77aa1c9e0b"
    assert redact(url) == url
    assert redact(url) == url
    register_secret("run-77aa1c9e0b")
    assert redact(url) == "https://api.example.com/api/jobs/***"


# ---------------------------------------------------------------- request building


async def test_headers_url_joining_and_user_agent(
    transport: Transport, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/v1/sessions?limit=5&ok=true&tag=a&tag=b", payload=[])
    await transport.request(
        "get",
        "/v1/sessions",
        params={"limit": 5, "ok": True, "marker": None, "tag": ["a", "b"]},
        headers={"IBM-API-Version": "2025-05-01"},
        idempotent=True,
    )
    sent = sent_kwargs(mocked, "GET", f"{BASE}/v1/sessions?limit=5&ok=true&tag=a&tag=b")
    headers = sent["headers"]
    assert headers["User-Agent"] == default_user_agent()
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["IBM-API-Version"] == "2025-05-01"


async def test_fixed_headers_are_reused_and_never_mixed_between_requests(
    transport: Transport, mocked: aioresponses
) -> None:
    mocked.post(f"{BASE}/a", payload={}, repeat=True)
    mocked.get(f"{BASE}/b", payload={}, repeat=True)
    for extra in (None, {"X-Trace": "t1"}, None):
        await transport.request("POST", "a", json={"x": 1}, headers=extra, idempotent=False)
    await transport.request("GET", "b", idempotent=True)
    await transport.request("GET", "b", idempotent=True, authenticate=False)
    await transport.request(
        "GET", "b", headers={"accept": "text/plain", "X-Trace": "t2"}, idempotent=True
    )
    posts = [dict(sent_kwargs(mocked, "POST", f"{BASE}/a", i)["headers"]) for i in range(3)]
    expected = {
        "User-Agent": default_user_agent(),
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {TOKEN}",
    }
    assert posts[0] == posts[2] == expected
    assert posts[1] == {**expected, "X-Trace": "t1"}
    gets = [sent_kwargs(mocked, "GET", f"{BASE}/b", i)["headers"] for i in range(3)]
    assert dict(gets[0]) == {k: v for k, v in expected.items() if k != "Content-Type"}
    assert "Authorization" not in gets[1]
    assert gets[2]["Accept"] == "text/plain"  # a request's own headers win
    assert len(gets[2].getall("Accept")) == 1
    assert gets[2]["X-Trace"] == "t2"
    assert "X-Trace" not in gets[0]


async def test_json_bodies_are_compact_utf8_and_refuse_nan(
    transport: Transport, mocked: aioresponses
) -> None:
    mocked.post(f"{BASE}/a", payload={}, repeat=True)
    await transport.request("POST", "a", json={"name": "Zoë", "n": [1, 2.5]}, idempotent=False)
    assert sent_kwargs(mocked, "POST", f"{BASE}/a")["data"] == '{"name":"Zoë","n":[1,2.5]}'.encode()
    with pytest.raises(ValueError, match="JSON body cannot be encoded"):
        await transport.request("POST", "a", json={"x": float("nan")}, idempotent=False)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular reference"):
        await transport.request("POST", "a", json=loop, idempotent=False)


async def test_json_and_form_bodies(transport: Transport, mocked: aioresponses) -> None:
    mocked.post(f"{BASE}/a", payload={})
    mocked.post("https://iam.example.com/identity/token", payload={"access_token": "t"})
    await transport.request("POST", "a", json={"name": "etl", "n": 1}, idempotent=False)
    await transport.request(
        "POST",
        "https://iam.example.com/identity/token",
        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": "k" * 10},
        idempotent=True,
    )
    a = sent_kwargs(mocked, "POST", f"{BASE}/a")
    assert json.loads(a["data"]) == {"name": "etl", "n": 1}
    assert a["headers"]["Content-Type"] == "application/json"
    iam = sent_kwargs(mocked, "POST", "https://iam.example.com/identity/token")
    assert iam["data"].startswith(b"grant_type=urn%3Aibm%3Aparams")
    assert iam["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    # Another origin does not get this API's credentials unless asked.
    assert "Authorization" not in iam["headers"]


async def test_authenticate_flag_overrides_the_origin_rule(
    transport: Transport, mocked: aioresponses
) -> None:
    mocked.get("https://other.example.com/x", payload={})
    mocked.get(f"{BASE}/public", payload={})
    await transport.request(
        "GET", "https://other.example.com/x", idempotent=True, authenticate=True
    )
    await transport.request("GET", "public", idempotent=True, authenticate=False)
    assert "Authorization" in sent_kwargs(mocked, "GET", "https://other.example.com/x")["headers"]
    assert "Authorization" not in sent_kwargs(mocked, "GET", f"{BASE}/public")["headers"]


async def test_bad_request_input_fails_clearly(transport: Transport) -> None:
    with pytest.raises(ValueError, match="json= or data="):
        await transport.request("POST", "x", json={}, data={"a": "b"}, idempotent=False)
    with pytest.raises(TypeError, match="JSON body"):
        await transport.request("POST", "x", json={"when": object()}, idempotent=False)
    with pytest.raises(TypeError, match="'filter'"):
        await transport.request("GET", "x", params={"filter": {"a": 1}}, idempotent=True)
    with pytest.raises(ValueError, match="X-Bad"):
        await transport.request("GET", "x", headers={"X-Bad": "a\r\nb"}, idempotent=True)
    with pytest.raises(ValueError, match="timeout"):
        await transport.request("GET", "x", idempotent=True, timeout=-1)
    with pytest.raises(TypeError, match="idempotent"):
        await transport.request("GET", "x", idempotent=None)  # type: ignore[arg-type]


async def test_governor_is_consulted_on_every_attempt(mocked: aioresponses, rec: Recorder) -> None:
    class Governor:
        def __init__(self) -> None:
            self.acquired = 0
            self.feedback_calls: list[tuple[int | None, float | None]] = []

        @contextlib.asynccontextmanager
        async def slot(self) -> AsyncIterator[None]:
            self.acquired += 1
            yield

        def feedback(self, status: int | None, retry_after: float | None) -> None:
            self.feedback_calls.append((status, retry_after))

    gov = Governor()
    async with Transport(BASE, governor=gov, retry=FAST) as t:
        t._sleep = rec.sleep
        url = f"{BASE}/x"
        mocked.get(url, status=429, headers={"Retry-After": "2"})
        mocked.get(url, exception=aiohttp.ServerDisconnectedError())
        mocked.get(url, payload={})
        await t.request("GET", "x", idempotent=True)
    assert gov.acquired == 3
    assert gov.feedback_calls == [(429, 2.0), (None, None), (200, None)]


async def test_bad_request_arguments_raise_before_anything_is_sent(mocked: aioresponses) -> None:
    async with Transport(BASE) as t:
        with pytest.raises(TypeError, match="idempotent= must be True or False"):
            await t.request("GET", "x", idempotent="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="path must be a str"):
            await t.request("GET", 42, idempotent=True)  # type: ignore[arg-type]
    assert not mocked.requests


async def test_the_retry_budget_starts_when_the_request_is_awaited(
    mocked: aioresponses, rec: Recorder
) -> None:
    policy = RetryPolicy(
        max_attempts=3, backoff_initial=0.001, backoff_max=0.002, total_timeout=0.2
    )
    async with Transport(BASE, retry=policy) as t:
        t._sleep = rec.sleep
        mocked.get(f"{BASE}/x", status=503)
        mocked.get(f"{BASE}/x", payload={"ok": True})
        pending = t.request("GET", "x", idempotent=True)
        await asyncio.sleep(0.3)  # longer than the whole budget, before the first try
        assert (await pending).json() == {"ok": True}  # the 503 was still retried
    assert len(rec.sleeps) == 1


async def test_lifecycle(mocked: aioresponses) -> None:
    t = Transport(BASE)
    assert not t.closed
    async with t:
        mocked.get(f"{BASE}/x", payload={})
        await t.request("GET", "x", idempotent=True)
    assert t.closed
    await t.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await t.request("GET", "x", idempotent=True)
    with pytest.raises(RuntimeError, match="closed"):
        async with t:
            pass


# ---------------------------------------------------------------- loopback server


class Server:
    """A real HTTP server on 127.0.0.1 with a few streaming behaviours."""

    def __init__(self) -> None:
        self.open_streams = 0
        self.hits: dict[str, int] = {}
        self.ack = asyncio.Event()
        self.all_closed = asyncio.Event()
        self.user_agents: list[str] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/json", self.json)
        app.router.add_get("/slow-answer", self.slow_answer)
        app.router.add_get("/handshake", self.handshake)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/trickle", self.trickle)
        app.router.add_get("/forever", self.forever)
        app.router.add_get("/busy-stream", self.busy_stream)
        app.router.add_get("/redirect", self.redirect)
        return app

    def count(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.user_agents.append(request.headers.get("User-Agent", ""))

    async def start_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        return resp

    async def json(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.json_response({"ok": True})

    async def slow_answer(self, request: web.Request) -> web.Response:
        self.count(request)
        await asyncio.sleep(2)
        return web.json_response({})

    async def handshake(self, request: web.Request) -> web.StreamResponse:
        # The second chunk is sent only once the client has seen the first: proof that
        # chunks are handed over as they arrive, not buffered to the end.
        resp = await self.start_stream(request)
        await resp.write(b'{"n": 1}\n')
        await asyncio.wait_for(self.ack.wait(), 2)
        await resp.write(b'{"n": 2}\n')
        await resp.write_eof()
        return resp

    async def stall(self, request: web.Request) -> web.StreamResponse:
        resp = await self.start_stream(request)
        await resp.write(b"first")
        await asyncio.sleep(5)  # goes quiet (cancelled when the client hangs up)
        return resp

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        resp = await self.start_stream(request)
        for i in range(9):
            await resp.write(b"%d\n" % i)
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    async def forever(self, request: web.Request) -> web.StreamResponse:
        self.open_streams += 1
        try:
            resp = await self.start_stream(request)
            while True:
                await resp.write(b"x" * 100)
                await asyncio.sleep(0.02)
        finally:
            self.open_streams -= 1
            if not self.open_streams:
                self.all_closed.set()

    async def busy_stream(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.json_response({"error": "warming up"}, status=503)

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/json?api_key={RAW_KEY}")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving() as srv:
        yield srv


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    """The ``server`` fixture's server, for a test on virtual time (it builds its own)."""
    srv = Server()
    runner = web.AppRunner(srv.app(), handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    srv.url = f"http://{host}:{port}"
    try:
        yield srv
    finally:
        await runner.cleanup()


async def test_real_request_sends_user_agent(server: Server) -> None:
    async with Transport(server.url, user_agent="my-tool/1.2") as t:
        r = await t.request("GET", "/json", idempotent=True)
    assert r.json() == {"ok": True}
    assert server.user_agents == [f"{default_user_agent()} my-tool/1.2"]


async def test_per_call_timeout_overrides_total(server: Server) -> None:
    async with Transport(server.url) as t:
        with anyio.fail_after(5):
            with pytest.raises(TransportError, match="timed out") as info:
                await t.request("GET", "/slow-answer", idempotent=True, timeout=0.2, retry=NO_RETRY)
    assert info.value.sent is True
    assert info.value.retryable is True


async def test_without_a_per_call_timeout_the_total_applies(server: Server) -> None:
    async with Transport(server.url, timeouts=Timeouts(total=0.2)) as t:
        with anyio.fail_after(5):
            with pytest.raises(TransportError, match=r"timed out after 0.2 s") as info:
                await t.request("GET", "/slow-answer", idempotent=True, retry=NO_RETRY)
        # ...and a per-call timeout still wins over it.
        assert (await t.request("GET", "/json", idempotent=True, timeout=3)).json() == {"ok": True}
    assert info.value.sent is True


async def test_read_timeout_is_enforced_on_requests(server: Server) -> None:
    async with Transport(server.url, timeouts=Timeouts(read=0.2, total=5)) as t:
        with anyio.fail_after(4):
            with pytest.raises(TransportError, match="timed out reading the response") as info:
                await t.request("GET", "/slow-answer", idempotent=True, retry=NO_RETRY)
    assert (info.value.sent, info.value.retryable) == (True, True)


async def test_read_timeout_guards_a_request_without_a_total(server: Server) -> None:
    async with Transport(server.url, timeouts=Timeouts(read=0.2, total=None)) as t:
        with anyio.fail_after(4):
            with pytest.raises(TransportError, match="timed out reading the response"):
                await t.request("GET", "/slow-answer", idempotent=True, retry=NO_RETRY)


@pytest.mark.parametrize(
    ("read", "total", "armed"),
    [
        (60.0, 60.0, None),
        (60.0, 30.0, None),
        (None, 60.0, None),
        (30.0, 60.0, 30.0),
        (30.0, None, 30.0),
        (None, None, None),
    ],
)
def test_read_timer_is_armed_only_when_it_can_fire_before_total(
    read: float | None, total: float | None, armed: float | None
) -> None:
    # aiohttp re-arms sock_read on every chunk; when total always fires first it is waste.
    timeout = Timeouts(read=read, total=total)._for_request(total)
    assert (timeout.total, timeout.sock_read) == (total, armed)
    assert timeout.sock_connect == 10.0


async def test_a_redirect_is_never_followed_and_names_its_location(server: Server) -> None:
    async with Transport(server.url) as t:
        with pytest.raises(APIError) as info:
            await t.request("GET", "/redirect", idempotent=True)
        plain = await t.request("GET", "/json?x=1", idempotent=True)
    assert info.value.status == 302
    assert "redirects to '/json?api_key=***'" in str(info.value)
    assert "never follows redirects" in str(info.value)
    assert RAW_KEY not in str(info.value)
    assert RAW_KEY not in repr(info.value)
    assert plain.url == f"{server.url}/json?x=1"


async def test_response_urls_honour_secrets_registered_later(server: Server) -> None:
    async with Transport(server.url) as t:
        before = await t.request("GET", "/json?run=zz-9f8e7d6c5b", idempotent=True)
        register_secret("zz-9f8e7d6c5b")
        after = await t.request("GET", "/json?run=zz-9f8e7d6c5b", idempotent=True)
    assert before.url == f"{server.url}/json?run=zz-9f8e7d6c5b"
    assert after.url == f"{server.url}/json?run=***"


async def test_stream_yields_chunks_as_they_arrive(server: Server) -> None:
    async with Transport(server.url) as t, t.stream("GET", "/handshake") as s:
        assert isinstance(s, ByteStream)
        assert s.status == 200
        assert s.headers["content-type"] == "application/x-ndjson"
        received = b""
        with anyio.fail_after(3):
            async for chunk in s:
                received += chunk
                if received == b'{"n": 1}\n':
                    server.ack.set()
    assert received == b'{"n": 1}\n{"n": 2}\n'
    assert s.bytes_read == len(received)
    assert s.closed


async def test_stream_stall_timeout_fires(server: Server) -> None:
    async with Transport(server.url, timeouts=Timeouts(stall=0.2)) as t:
        got: list[bytes] = []

        async def consume() -> None:
            async with t.stream("GET", "/stall") as s:
                async for chunk in s:
                    got.append(chunk)

        with anyio.fail_after(3), pytest.raises(TransportError, match="stalled") as info:
            await consume()
    assert got == [b"first"]
    assert (info.value.sent, info.value.retryable) == (True, True)
    assert "0.2" in str(info.value)


# On virtual time: the 0.9 s stream outlasts the total timeout on the loop's clock, at once
async def test_a_slow_stream_is_not_cut_by_the_total_timeout() -> None:
    async with (
        serving() as server,
        Transport(server.url, timeouts=Timeouts(total=0.3, stall=0.5)) as t,
    ):
        lines = b""
        with anyio.fail_after(5):
            async with t.stream("GET", "/trickle") as s:
                async for chunk in s:
                    lines += chunk
    assert lines.split() == [b"%d" % i for i in range(9)]


async def test_stream_error_status_is_mapped_and_retried(server: Server, rec: Recorder) -> None:
    async with Transport(server.url, retry=FAST.replace(max_attempts=2)) as t:
        t._sleep = rec.sleep
        with pytest.raises(ServerError) as info:
            async with t.stream("GET", "/busy-stream"):
                pytest.fail("a 503 stream must not open")
    assert server.hits["/busy-stream"] == 2
    assert "warming up" in info.value.body


async def test_abandoned_streams_release_their_connections(server: Server) -> None:
    async with Transport(server.url, timeouts=Timeouts(stall=2)) as t:

        async def fail_inside() -> None:
            async with t.stream("GET", "/forever") as s:
                async for _ in s:
                    raise LookupError("consumer failed")

        async def abandon(i: int) -> None:
            mode = i % 3
            if mode == 0:  # break out of the loop
                async with t.stream("GET", "/forever") as s:
                    async for _ in s:
                        break
            elif mode == 1:  # an exception inside the block
                with pytest.raises(LookupError):
                    await fail_inside()
            else:  # cancelled while reading
                with anyio.CancelScope() as scope:
                    async with t.stream("GET", "/forever") as s:
                        async for _ in s:
                            scope.cancel()
                            await anyio.sleep(5)
                assert scope.cancelled_caught

        async def worker(start: int) -> None:
            for i in range(start, 200, 20):
                await abandon(i)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for w in range(20):
                    tg.start_soon(worker, w)
        assert t._pool.session is not None
        connector = t._pool.session.connector
        assert connector is not None
        assert len(connector._acquired) == 0  # nothing still checked out
        server.all_closed.clear()
        if server.open_streams:  # the server must see every connection go
            with anyio.fail_after(5):
                await server.all_closed.wait()
        assert server.open_streams == 0
        # The pool still works afterwards.
        assert (await t.request("GET", "/json", idempotent=True)).json() == {"ok": True}


async def test_unclosed_transport_warns_on_gc_without_aiohttp_noise(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    t = Transport(server.url)
    await t.request("GET", "/json", idempotent=True)  # the session now exists
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del t
        gc.collect()
        messages = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
        # The recorded warning holds the transport (its source) alive: drop it, so that the
        # session really dies here and any aiohttp complaint is caught.
        seen.clear()
        gc.collect()
        messages += [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert [m for m in messages if m.startswith("unclosed Transport(")]
    assert not [m for m in messages if "Unclosed client session" in m]
    assert not [m for m in messages if "Unclosed connector" in m]
    assert "Unclosed" not in caplog.text


async def test_gc_of_an_open_transport_is_a_resource_warning(server: Server) -> None:
    holder = [Transport(server.url)]
    await holder[0].request("GET", "/json", idempotent=True)
    with pytest.warns(ResourceWarning, match="unclosed Transport"):
        holder.clear()  # the last reference goes: no cycle, so it is finalized at once


# ---------------------------------------------------------------- URLs known without parsing


async def test_response_urls_are_the_requested_urls_redacted(server: Server) -> None:
    async with Transport(server.url + "/") as t:
        plain = await t.request("GET", "/json", idempotent=True)
        keyed = await t.request("GET", "json", params={"api_key": RAW_KEY}, idempotent=True)
    assert plain.url == f"{server.url}/json"
    assert keyed.url == f"{server.url}/json?api_key=***"


async def test_a_base_url_with_an_explicit_default_port_gets_its_auth(
    mocked: aioresponses,
) -> None:
    # yarl writes "https://h:443/api" as "https://h/api"; its origin() kept the port, so
    # these requests once went without their auth headers.
    auth = StaticAuth({"Authorization": RAW_KEY})
    async with Transport("https://api.example.com:443/api", auth=auth) as t:
        mocked.get("https://api.example.com/api/x", payload={}, repeat=True)
        await t.request("GET", "x", idempotent=True)
        await t.request("GET", "https://api.example.com/api/x", idempotent=True)

        def use_auth(url: str) -> bool:
            return t._base.prepare(
                "GET", url, json=None, data=None, params=None, headers=None, authenticate=None
            ).use_auth

        assert use_auth("https://API.example.com:443/y") is True
        assert use_auth("http://api.example.com/api/x") is False
        assert use_auth("https://api.example.com:8443/api/x") is False
    calls = mocked.requests[("GET", URL("https://api.example.com/api/x"))]
    assert [c.kwargs["headers"]["Authorization"] for c in calls] == [RAW_KEY, RAW_KEY]


async def test_a_launch_never_rides_a_kept_alive_connection_the_server_dropped() -> None:
    # A server that serves one request per connection and, like one whose idle timeout
    # fires just then, drops the connection when a second request arrives on it, unread:
    # a launch sent on a pooled connection would fail although the server never saw it.
    served: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length[1]))
            served.append(head.split(b" ", 2)[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Transport(f"http://127.0.0.1:{port}", retry=NO_RETRY) as t:
            for i in range(5):
                await t.request("GET", f"/read-{i}", idempotent=True, retry=FAST)
                await t.request("POST", f"/launch-{i}", json={}, idempotent=False)
    finally:
        server.close()
        await server.wait_closed()
    assert sum(p.startswith(b"/launch-") for p in served) == 5  # each launch went once
