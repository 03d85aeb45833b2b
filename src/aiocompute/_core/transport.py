"""The aiohttp seam: one ``ClientSession`` per client, timeouts, retries, error mapping.

Every API client talks HTTP through a :class:`Transport`. This module is the only place
that knows aiohttp's exceptions; it maps them, once, onto the error tree of
:mod:`aiocompute._exceptions`:

============================================  ==========================================
what happened                                 raised
============================================  ==========================================
2xx                                           a :class:`Response` is returned
401 / 403                                     :class:`AuthenticationError`
404                                           :class:`NotFoundError`
429                                           :class:`RateLimitError` (``.retry_after``)
5xx (also an HTML page from a proxy)          :class:`ServerError`
other non-2xx                                 :class:`APIError`
connection refused, DNS, connect timeout      :class:`TransportError` ``sent=False``
dropped connection, cut body, read timeout    :class:`TransportError` ``sent=True``
TLS / certificate failure                     :class:`TransportError` ``retryable=False``
a 2xx body that is not the promised JSON      :class:`ProtocolError` (from ``Response.json``)
============================================  ==========================================

Retries go through :func:`aiocompute._core.retries.call_with_retries`; whether a call is
idempotent is always stated by the caller.

Timeouts: ``Timeouts.total`` bounds each HTTP exchange (one try) of :meth:`Transport.request`;
the retry policy's ``total_timeout`` bounds the retrying. Streams (:meth:`Transport.stream`)
never inherit ``total``: they are bounded by the connect timeout and by a *stall* timeout,
the longest silence allowed between two chunks.

Credentials never reach logs, reprs or errors: the transport logs method, redacted URL,
status and elapsed time only, and every header value that looks like a credential is
registered with :func:`aiocompute._exceptions.register_secret` so that error texts are
scrubbed of it even when a server echoes it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy as _copy
import html
import itertools
import json as _json
import logging
import math
import os
import random
import re
import ssl
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from http import HTTPStatus
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
import anyio
from attrs import field, frozen
from multidict import CIMultiDict
from yarl import URL

from .._exceptions import (
    APIError,
    ClientClosedError,
    InsecureTransportWarning,
    OutcomeUnknown,
    ProtocolError,
    TransportError,
    api_error_for,
    excerpt,
    redact,
    register_secret,
)
from .._version import __version__
from .governor import Governor
from .network import (
    EventHooks,
    RequestView,
    ResponseView,
    call_hooks,
    check_proxy,
    is_loopback,
    redacted_headers,
    ssl_setting,
)
from .observability import record_response, retry_recorder
from .retries import DEFAULT_RETRY, RetryPolicy, call_with_retries, parse_retry_after

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUTS",
    "ERROR_BODY_LIMIT",
    "AuthProvider",
    "ByteStream",
    "ErrorParser",
    "NoAuth",
    "PoolLimits",
    "Response",
    "StaticAuth",
    "Timeouts",
    "Transport",
    "default_user_agent",
]

logger = logging.getLogger("aiocompute.transport")

T = TypeVar("T")

#: At most this many bytes of an error response are read (the rest is dropped).
ERROR_BODY_LIMIT = 64 * 1024

# HTML is reduced to text from at most this many characters: the excerpt is short anyway,
# and the tag-stripping regex must stay cheap on hostile input.
_HTML_SCAN_CHARS = 4096


# --------------------------------------------------------------------------- configuration


def _check_number(owner: str, name: str, value: Any, *, allow_none: bool) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{owner}.{name} must be a positive number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive finite number, got {value!r}")


def _seconds(owner: str, *, allow_none: bool) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attribute: Any, value: Any) -> None:
        _check_number(owner, attribute.name, value, allow_none=allow_none)

    return check


def _count(_inst: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"PoolLimits.{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"PoolLimits.{attribute.name} must be >= 0 (0 = unlimited), got {value}")


@frozen
class Timeouts:
    """Timeouts in seconds; ``None`` means no limit (except for ``stall``).

    - ``connect``: establishing a TCP (and TLS) connection.
    - ``read``: the longest wait for the next bytes of a response (socket read). A request
      arms this timer only when it could fire before ``total`` does (``read < total``, or
      ``total`` is None): by default ``total`` already bounds every request.
    - ``total``: one whole HTTP exchange of :meth:`Transport.request` (each try on its own;
      the retry policy bounds the retrying). Never applied to streams.
    - ``stall``: the longest silence allowed on a stream between two chunks. It cannot be
      None: a stream without a stall timeout could hang forever.
    """

    connect: float | None = field(default=10.0, validator=_seconds("Timeouts", allow_none=True))
    read: float | None = field(default=60.0, validator=_seconds("Timeouts", allow_none=True))
    total: float | None = field(default=60.0, validator=_seconds("Timeouts", allow_none=True))
    stall: float = field(default=60.0, validator=_seconds("Timeouts", allow_none=False))

    def _for_request(self, total: float | None) -> aiohttp.ClientTimeout:
        # connect=None: waiting for a free pooled connection is bounded by total, not by the
        # connect timeout, so a busy fan-out does not fail with spurious connect timeouts.
        # aiohttp re-arms the read timer on every chunk received: skip it when total, which
        # covers the body too, would always fire first.
        read = self.read if total is None or (self.read is not None and self.read < total) else None
        return aiohttp.ClientTimeout(
            total=total, connect=None, sock_connect=self.connect, sock_read=read
        )

    def _for_stream(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.connect, sock_read=None
        )


@frozen
class PoolLimits:
    """Connection-pool limits of a transport's one ``ClientSession``.

    ``max_connections`` and ``max_connections_per_host`` use aiohttp's meaning: 0 means
    unlimited. ``keepalive_timeout`` is how long an idle connection is kept for reuse.
    """

    max_connections: int = field(default=100, validator=_count)
    max_connections_per_host: int = field(default=0, validator=_count)
    keepalive_timeout: float = field(
        default=15.0, validator=_seconds("PoolLimits", allow_none=False)
    )


#: The default timeouts: connect 10 s, read 60 s, total 60 s, stall 60 s.
DEFAULT_TIMEOUTS = Timeouts()

#: The default pool: 100 connections, no per-host limit, 15 s keep-alive.
DEFAULT_LIMITS = PoolLimits()


def default_user_agent() -> str:
    """``aiocompute/<version> python/<x.y> aiohttp/<version>``."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"aiocompute/{__version__} python/{py} aiohttp/{aiohttp.__version__}"


# --------------------------------------------------------------------------- bodies


def _content_type(headers: Mapping[str, str]) -> str:
    return headers.get("Content-Type", "") or ""


def _charset(content_type: str) -> str:
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else "utf-8"


def _decode(body: bytes, content_type: str) -> str:
    try:
        return body.decode(_charset(content_type), "replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", "replace")


_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title")
_HTML_NOISE = re.compile(r"(?is)<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<[^>]*>")


def _looks_like_html(body: bytes, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    return body[:256].lstrip().lower().startswith(_HTML_START)


def _readable(body: bytes, content_type: str) -> str:
    """The body as text fit for an excerpt: an HTML page is reduced to its words."""
    if _looks_like_html(body, content_type):
        text = _decode(body[: _HTML_SCAN_CHARS * 4], content_type)[:_HTML_SCAN_CHARS]
        return " ".join(html.unescape(_HTML_NOISE.sub(" ", text)).split())
    return _decode(body[:_HTML_SCAN_CHARS], content_type)


class Response(NamedTuple):
    """A complete, successful (2xx) HTTP response.

    ``headers`` is case-insensitive. ``url`` is the redacted URL that was requested.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str
    url: str

    @property
    def text(self) -> str:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 by default)."""
        return _decode(self.body, _content_type(self.headers))

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises :class:`ProtocolError` (with the status and a short excerpt) for an empty
        body, an HTML page (a proxy's or a login page) or anything that is not valid JSON.
        """
        if not self.body.strip():
            raise ProtocolError(
                "expected a JSON body, got an empty one",
                status=self.status,
                method=self.method,
                url=self.url,
            )
        try:
            return _json.loads(self.body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            detail = (
                "nested too deeply"
                if isinstance(exc, RecursionError)
                else f"{type(exc).__name__}: {exc}"
            )
        # Raised here, not in the except block: the JSONDecodeError (whose .doc is the whole
        # body) must not ride along as __context__.
        content_type = _content_type(self.headers)
        if _looks_like_html(self.body, content_type):
            message = "expected JSON, got an HTML page (from a proxy or a login page?)"
        else:
            message = f"expected JSON, got an invalid body ({detail})"
        raise ProtocolError(
            message,
            status=self.status,
            body=_readable(self.body, content_type),
            method=self.method,
            url=self.url,
        )

    def __repr__(self) -> str:
        # Never the body or headers: a token endpoint's body is a credential.
        return (
            f"Response(status={self.status}, method={self.method!r}, url={self.url!r}, "
            f"body=<{len(self.body)} bytes>)"
        )


#: API-specific error decoder: ``(status, body, headers) -> (code, message)`` taken from the
#: API's error shape, or None to fall back to a generic "HTTP 502 Bad Gateway: ..." message.
ErrorParser = Callable[[int, bytes, Mapping[str, str]], "tuple[Any, str] | None"]


# --------------------------------------------------------------------------- auth & governor

# Header names whose values are credentials (registered for redaction).
_SENSITIVE_HEADER = re.compile(
    r"(?i)authorization|cookie|token|secret|password|api[-_]?key|credential"
)


def _register_credential(value: str) -> None:
    register_secret(value)
    # "Bearer abc" / "Basic abc" / "token abc": the bare credential may be echoed alone.
    parts = value.split(None, 1)
    if len(parts) == 2:
        register_secret(parts[1].strip())


def _checked_headers(headers: Mapping[str, str] | None, where: object) -> dict[str, str]:
    # ``where`` is only formatted into an error message.
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{where} must be a mapping of header names to values")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        # Errors name the header, never its value (it may be a credential).
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{where}: header {name!r} must map a str to a str")
        if any(c in name or c in value for c in "\r\n"):
            raise ValueError(f"{where}: header {name!r} contains a line break")
        if _SENSITIVE_HEADER.search(name):
            _register_credential(value)
        checked[name] = value
    return checked


class AuthProvider(Protocol):
    """Supplies the authentication headers of each HTTP try.

    Called once per try, so a provider may refresh an expiring token (Qiskit's IAM token)
    between tries.
    """

    async def headers(self) -> Mapping[str, str]:
        """The headers to add to the request, e.g. ``{"Authorization": "Bearer ..."}``."""
        ...


class StaticAuth:
    """Fixed authentication headers (a bearer token, a raw API key, a session cookie).

    Every value (and its part after a scheme such as ``Bearer``) is registered for
    redaction. The repr shows header names, never values.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        checked = _checked_headers(headers, "StaticAuth")
        for value in checked.values():
            _register_credential(value)
        self._headers: Mapping[str, str] = MappingProxyType(checked)

    @classmethod
    def bearer(cls, token: str) -> StaticAuth:
        """``Authorization: Bearer <token>``."""
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a bearer token must be a non-empty string")
        return cls({"Authorization": f"Bearer {token.strip()}"})

    async def headers(self) -> Mapping[str, str]:
        """The fixed headers."""
        return self._headers

    def __repr__(self) -> str:
        return f"StaticAuth(<headers: {', '.join(self._headers) or 'none'}>)"


class NoAuth:
    """No authentication headers."""

    __slots__ = ()

    async def headers(self) -> Mapping[str, str]:
        """An empty mapping."""
        return MappingProxyType({})

    def __repr__(self) -> str:
        return "NoAuth()"


# --------------------------------------------------------------------------- helpers


def _safe_url(url: str | URL) -> str:
    """The URL without user info and with credential-like query values redacted."""
    return redact(_without_userinfo(url))


def _without_userinfo(url: str | URL) -> str:
    try:
        parsed = URL(url) if isinstance(url, str) else url
        if parsed.user is not None or parsed.password is not None:
            parsed = parsed.with_user(None)
        return str(parsed)
    except (TypeError, ValueError):
        return str(url)


def _check_base_url(base_url: str) -> URL:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    try:
        url = URL(base_url.strip())
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url must be an absolute http(s) URL such as 'https://host/api', "
            f"got {_safe_url(base_url)!r}"
        )
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not have a query or fragment: {_safe_url(base_url)!r}")
    return url


# "scheme://user:password@" inside free text.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class _Prepared(NamedTuple):
    """What every try of one request or stream sends, worked out once."""

    verb: str
    url: str
    query: list[tuple[str, str]] | None
    body: bytes | None
    content_type: str | None
    extra: Mapping[str, str]
    use_auth: bool
    #: A credential would go over plain http to a host that is not loopback.
    insecure: bool
    #: The redacted URL with its query, for errors, logs and hooks.
    where: str


def _encode_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    if params is None:
        return None
    encoded: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if item is None:  # an absent optional parameter
                continue
            if isinstance(item, bool):
                encoded.append((key, "true" if item else "false"))
            elif isinstance(item, (str, int, float)):
                encoded.append((key, str(item)))
            else:
                raise TypeError(
                    f"query parameter {key!r}: cannot send a {type(item).__name__} "
                    "(use str, int, float, bool, or a list of those)"
                )
    return encoded


def _with_query(url: str, query: list[tuple[str, str]] | None) -> str:
    """The URL as it will be sent, for logs and errors."""
    if not query:
        return url
    try:
        parsed = URL(url)
        return str(parsed.with_query([*parsed.query.items(), *query]))
    except (TypeError, ValueError):
        return url


# What json.dumps(separators=(",", ":"), ensure_ascii=False, allow_nan=False) would build on
# every call; one encoder serves every call (encode() keeps no state between calls).
_JSON_ENCODER = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode_body(
    json_body: Any, data: Mapping[str, str] | None, where: object
) -> tuple[bytes | None, str | None]:
    if json_body is not None and data is not None:
        raise ValueError(f"{where}: pass either json= or data=, not both")
    if json_body is not None:
        try:
            text = _JSON_ENCODER.encode(json_body)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: the JSON body cannot be encoded: {exc}") from None
        return text.encode("utf-8"), "application/json"
    if data is not None:
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: data= must be a mapping of form fields")
        return urlencode(list(data.items())).encode("ascii"), "application/x-www-form-urlencoded"
    return None, None


def _reason(status: int, reason: str | None) -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
)
_DNS_ERROR: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ClientConnectorDNSError", None),) if t is not None
)

# Everything below is mapped to TransportError; anything else (bugs, cancellation) passes.
_MAPPED = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)


def _map_error(exc: BaseException, *, method: str, url: str, timeout_text: str) -> TransportError:
    """Map an aiohttp / socket / timeout exception onto :class:`TransportError`."""

    def err(message: str, *, sent: bool, retryable: bool = True) -> TransportError:
        return TransportError(message, sent=sent, retryable=retryable, method=method, url=url)

    try:
        detail = str(exc) or type(exc).__name__
    except Exception:  # some aiohttp errors cannot print themselves without request info
        detail = type(exc).__name__
    detail = _USERINFO.sub(r"\1", detail)  # aiohttp's texts quote URLs whole
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused the CONNECT tunnel: the request never reached the server.
        return err(
            f"the proxy refused the connection: HTTP {exc.status} {exc.message}",
            sent=False,
            retryable=exc.status in (502, 503, 504),
        )
    # TLS first: certificate errors are also connector errors, but retrying cannot help.
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        return err(f"TLS error: {detail}", sent=False, retryable=False)
    if isinstance(exc, ssl.SSLError):
        return err(f"TLS error: {detail}", sent=True, retryable=False)
    if _CONNECT_TIMEOUT and isinstance(exc, _CONNECT_TIMEOUT):
        return err(f"timed out connecting: {detail}", sent=False)
    if _DNS_ERROR and isinstance(exc, _DNS_ERROR):
        return err(f"DNS lookup failed: {detail}", sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return err(f"cannot connect: {detail}", sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return err(f"timed out reading the response: {detail}", sent=True)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return err(f"timed out {timeout_text}", sent=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return err("the server closed the connection before answering", sent=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return err(f"the response body was cut off: {detail}", sent=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return err(f"invalid URL: {detail}", sent=False, retryable=False)
    if isinstance(exc, aiohttp.ClientResponseError):
        # A malformed response: trying again won't help.
        return err(f"bad HTTP response: {exc.message or detail}", sent=True, retryable=False)
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        return err(f"connection error: {detail}", sent=True)
    return err(f"HTTP client error: {detail}", sent=True, retryable=False)


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- stream


class ByteStream:
    """The body of a long-lived streamed response, as byte chunks in arrival order.

    Iterate with ``async for chunk in stream``. Each wait for the next chunk is bounded by
    the stall timeout: silence longer than that raises :class:`TransportError` ("stream
    stalled"). Obtained from :meth:`Transport.stream`, whose ``async with`` block closes it.
    """

    def __init__(
        self, response: aiohttp.ClientResponse, *, stall: float, method: str, url: str
    ) -> None:
        self._response = response
        self._stall = stall
        self._eof = False
        self._closed = False
        #: Bytes received so far.
        self.bytes_read = 0
        #: The request method.
        self.method = method
        #: The redacted request URL.
        self.url = url

    @property
    def status(self) -> int:
        """The HTTP status (always 2xx: other statuses raise when the stream is opened)."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive)."""
        return self._response.headers

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        return self._closed

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        if self._eof:
            raise StopAsyncIteration
        if self._closed:
            raise RuntimeError("this stream was closed: read it inside its `async with` block")
        error: TransportError | None = None
        try:
            with anyio.fail_after(self._stall):
                chunk = await self._response.content.readany()
        except _MAPPED as exc:
            self._shut()
            if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
                error = TransportError(
                    f"stream stalled: no data for {self._stall:g} s",
                    sent=True,
                    retryable=True,
                    method=self.method,
                    url=self.url,
                )
            else:
                error = _map_error(
                    exc, method=self.method, url=self.url, timeout_text="reading the stream"
                )
        except BaseException:
            self._shut()  # cancelled mid-read: the connection is in an unknown state
            raise
        if error is not None:
            # Raised outside the except block: aiohttp's exception (its request_info holds
            # the request's headers) must not ride along as __context__.
            raise error
        if not chunk:
            self._eof = True
            self._shut()
            raise StopAsyncIteration
        self.bytes_read += len(chunk)
        return chunk

    async def aclose(self) -> None:
        """Close the stream now; an unread connection is dropped, not reused."""
        self._shut()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._eof:
            self._response.release()  # fully read: the connection may be reused
        else:
            self._response.close()  # unread bytes pending: drop the connection

    def __repr__(self) -> str:
        return f"ByteStream(status={self.status}, url={self.url!r}, bytes_read={self.bytes_read})"


# --------------------------------------------------------------------------- transport


class _Pool:
    """The ``aiohttp.ClientSession`` a transport and its :meth:`Transport.with_options`
    copies share: made lazily in the running loop, unless the caller gave their own."""

    def __init__(
        self,
        *,
        limits: PoolLimits,
        timeout: aiohttp.ClientTimeout,
        trust_env: bool,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._limits = limits
        self._timeout = timeout
        self._trust_env = trust_env
        self.session = session
        #: Whether the SDK made the session (and so closes it).
        self.owned = session is None
        self.closed = False
        #: Whether the plain-http credential warning was given (once per client).
        self.warned_insecure = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        if self.closed:
            raise ClientClosedError("this client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self.session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                limit_per_host=self._limits.max_connections_per_host,
                keepalive_timeout=self._limits.keepalive_timeout,
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                trust_env=self._trust_env,
            )
            self._loop = loop
        elif self.owned and self._loop is not loop:
            raise RuntimeError(
                "this client was first used on another event loop; create one client per event loop"
            )
        return self.session

    async def aclose(self) -> None:
        self.closed = True
        session = self.session
        if self.owned:
            self.session = None
            if session is not None and not session.closed:
                await session.close()


# The headers an APIError takes its request_id from, the first one present.
_REQUEST_ID_HEADERS = (
    "X-Request-Id",
    "X-Correlation-Id",
    "X-Global-Transaction-Id",
    "Request-Id",
    "X-Amzn-RequestId",
    "X-Amz-Request-Id",
    "X-Trace-Id",
)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _beyond_status(text: str, status: int, reason: str) -> str:
    """``text`` if it says more than the status and its reason ("401 Unauthorized" twice
    from an HTML error page says nothing new), else ""."""
    rest = text.lower().replace(str(status), " ")
    if reason:
        rest = rest.replace(reason.lower(), " ")
    rest = re.sub(r"\b(?:http|error)\b", " ", rest)
    return text if re.search(r"\w", rest) else ""


class Transport:
    """An HTTP client bound to one API base URL: one ``aiohttp.ClientSession`` (made lazily
    inside the running loop, or the caller's ``http_session``), closed by :meth:`aclose` or
    ``async with``.

    ``path`` arguments are joined onto ``base_url`` (``"https://h/api"`` + ``"/v1/x"`` =
    ``"https://h/api/v1/x"``); an absolute ``http(s)://`` URL is used as is. Auth headers
    are sent to the base URL's origin only, unless a call says ``authenticate=True``.
    Redirects are never followed: a 3xx answer raises :class:`APIError` naming its
    ``Location`` (none of the APIs redirects, and following one would carry credentials
    and bodies to another origin).

    ``user_agent``, if given, is appended to ``aiocompute/<v> python/<x.y> aiohttp/<v>``.
    ``headers`` are sent with every request; they never override the auth headers.
    ``trust_env``, ``proxy``, ``verify``, ``http_session`` and ``event_hooks`` are the
    connection options of :mod:`aiocompute._core.network`. ``error_parser`` reads an API's
    error answers; ``body_error_parser`` finds an error inside a 2xx body (Workbench's
    RPC errors), which is then retried and reported to the governor like an HTTP status.
    ``credential_hint`` names where the credential comes from, for 401 messages.
    ``on_retry(attempt, error, delay)`` is called before each retry wait.

    A transport garbage-collected while open emits a :class:`ResourceWarning` and closes
    its connections best-effort.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        limits: PoolLimits = DEFAULT_LIMITS,
        retry: RetryPolicy = DEFAULT_RETRY,
        error_parser: ErrorParser | None = None,
        body_error_parser: ErrorParser | None = None,
        user_agent: str | None = None,
        governor: Governor | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        trust_env: bool = True,
        proxy: str | None = None,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        http_session: aiohttp.ClientSession | None = None,
        event_hooks: Mapping[str, Sequence[Callable[[Any], object]]] | None = None,
        credential_hint: str | None = None,
    ) -> None:
        self._closed = False
        self._derived = False
        self._base = _check_base_url(base_url)
        self._base_url = str(self._base).rstrip("/")
        self._origin = (self._base.scheme, self._base.host, self._base.port)
        self._base_insecure = self._base.scheme == "http" and not is_loopback(self._base.host)
        # Credentials in the URL itself (basic auth) are credentials like any other.
        register_secret(self._base.password)
        for name, value, kind in (
            ("timeouts", timeouts, Timeouts),
            ("limits", limits, PoolLimits),
            ("retry", retry, RetryPolicy),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"{name}= must be a {kind.__name__}, got {value!r}")
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be True or False, got {trust_env!r}")
        if user_agent is not None and (
            not isinstance(user_agent, str) or "\n" in user_agent or "\r" in user_agent
        ):
            raise ValueError("user_agent must be a single-line string")
        if http_session is not None:
            if not isinstance(http_session, aiohttp.ClientSession):
                raise TypeError(
                    "http_session must be an aiohttp.ClientSession, "
                    f"got {type(http_session).__name__}"
                )
            if limits != DEFAULT_LIMITS:
                raise ValueError(
                    "limits= has no effect with http_session=: the session's own connector "
                    "sets its limits"
                )
        self._auth: AuthProvider = auth if auth is not None else NoAuth()
        self._timeouts = timeouts
        self._retry = retry
        self._error_parser = error_parser
        self._body_error_parser = body_error_parser
        self._governor = governor
        self._on_retry = on_retry
        self._credential_hint = credential_hint
        self._proxy = check_proxy(proxy)
        self._ssl = ssl_setting(verify, trust_env=trust_env)
        self._hooks = EventHooks.of(event_hooks)
        agent = default_user_agent()
        self._default_headers: dict[str, str] = {
            "User-Agent": f"{agent} {user_agent}" if user_agent else agent,
            "Accept": "application/json",
        }
        self._default_headers.update(_checked_headers(headers, "headers"))
        self._pool = _Pool(
            limits=limits,
            timeout=timeouts._for_request(timeouts.total),
            # An explicit proxy replaces the environment's.
            trust_env=trust_env and self._proxy is None,
            session=http_session,
        )
        self._rng = random.Random()
        # Test seam: the sleep used between retries.
        self._sleep: Callable[[float], Awaitable[Any]] = anyio.sleep

    # -- properties & lifecycle

    @property
    def base_url(self) -> str:
        """The base URL paths are joined onto (no trailing slash)."""
        return self._base_url

    @property
    def timeouts(self) -> Timeouts:
        """The timeouts in force."""
        return self._timeouts

    @property
    def retry(self) -> RetryPolicy:
        """The default retry policy of :meth:`request`."""
        return self._retry

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose` (of this transport, or of the one it was copied from)."""
        return self._closed or self._pool.closed

    def with_options(
        self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Transport:
        """A light copy with other timeouts, retry policy or extra headers, sharing this
        transport's connections, auth, governor and hooks. Closing the copy leaves the
        connections open; closing the original closes them for both."""
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise TypeError(f"timeouts= must be a Timeouts, got {timeouts!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry= must be a RetryPolicy, got {retry!r}")
        copy = _copy.copy(self)
        copy._derived = True
        copy._closed = False
        if timeouts is not None:
            copy._timeouts = timeouts
        if retry is not None:
            copy._retry = retry
        if headers is not None:
            copy._default_headers = {
                **self._default_headers,
                **_checked_headers(headers, "headers"),
            }
        return copy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={_safe_url(self._base_url)!r})"

    async def __aenter__(self) -> Transport:
        if self.closed:
            raise ClientClosedError("this client is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (unless this is a :meth:`with_options` copy, or the
        session is the caller's). Idempotent."""
        self._closed = True
        if not self._derived:
            await self._pool.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        pool = getattr(self, "_pool", None)  # __init__ may have failed early
        if pool is None or self._derived or not pool.owned:
            return
        session = pool.session
        if session is None or session.closed:
            return
        # Must never raise (warnings may be turned into errors; the loop may be gone).
        with contextlib.suppress(Exception):
            _warn(
                f"unclosed {self!r}: use `async with` or `await client.aclose()`",
                ResourceWarning,
                source=self,
            )
        with contextlib.suppress(Exception):
            # Closing the connector makes the session count as closed, so aiohttp does not
            # report it again; this only drops sockets, it needs no await.
            connector = session.connector
            close_now = getattr(connector, "_close", None)
            if close_now is not None:
                close_now()

    # -- request building

    def _url_for(self, path: str) -> str:
        return self._resolve(path)[0]

    def _resolve(self, path: str) -> tuple[str, bool]:
        """The URL of ``path``, and whether it was joined onto the base URL (then it has the
        base URL's origin by construction; an absolute URL must be checked)."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, got {type(path).__name__}")
        if _ABSOLUTE.match(path):
            if not path.lower().startswith(("http://", "https://")):
                raise ValueError(f"only http(s) URLs can be requested, got {_safe_url(path)!r}")
            return path, False
        if not path:
            return self._base_url, True
        return f"{self._base_url}/{path.lstrip('/')}", True

    def _prepare(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        data: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        authenticate: bool | None,
    ) -> _Prepared:
        verb = method.upper()
        url, joined = self._resolve(path)
        query = _encode_params(params)
        where = _safe_url(_with_query(url, query))
        body, content_type = _encode_body(json, data, f"{verb} {where}")
        extra = _checked_headers(headers, f"{verb} {where}")
        if joined:
            same_origin, insecure = True, self._base_insecure
        else:
            try:
                target = URL(url)
            except ValueError:
                same_origin, insecure = False, False
            else:
                # Effective ports: "https://h:443" and "https://h" are one origin.
                same_origin = (target.scheme, target.host, target.port) == self._origin
                insecure = target.scheme == "http" and not is_loopback(target.host)
        use_auth = same_origin if authenticate is None else authenticate
        return _Prepared(verb, url, query, body, content_type, extra, use_auth, insecure, where)

    async def _headers_for(self, p: _Prepared) -> CIMultiDict[str]:
        merged = CIMultiDict(self._default_headers)
        merged.update(p.extra)
        if p.content_type is not None:
            merged["Content-Type"] = p.content_type
        if p.use_auth:
            auth_headers = await self._auth.headers()
            for name, value in auth_headers.items():
                # Providers may refresh tokens: remember each one for redaction.
                if _SENSITIVE_HEADER.search(name):
                    _register_credential(value)
            # Last: no other header may replace a credential.
            merged.update(auth_headers)
        return merged

    def _warn_if_insecure(self, p: _Prepared) -> None:
        if (
            p.use_auth
            and p.insecure
            and not self._pool.warned_insecure
            and not isinstance(self._auth, NoAuth)
        ):
            self._pool.warned_insecure = True
            warnings.warn(
                f"a credential is sent over plain http to {_safe_url(p.url)!r}: anyone on the "
                "network can read it; use https://",
                InsecureTransportWarning,
                stacklevel=4,
            )

    def _feedback(self, status: int | None, retry_after: float | None) -> None:
        if self._governor is not None:
            self._governor.feedback(status, retry_after)

    def _governed(self) -> AbstractAsyncContextManager[object]:
        return self._governor.slot() if self._governor is not None else contextlib.nullcontext()

    def _api_error(
        self,
        status: int,
        reason: str | None,
        body: bytes,
        headers: Mapping[str, str],
        p: _Prepared,
        *,
        retry_after: float | None,
    ) -> APIError:
        content_type = _content_type(headers)
        readable = _readable(body, content_type)
        code: Any = None
        parsed: tuple[Any, str] | None = None
        if self._error_parser is not None and not 300 <= status < 400:
            try:
                parsed = self._error_parser(status, body, headers)
            except Exception as exc:
                # A parser bug must not hide the HTTP error the server reported.
                logger.debug("error parser failed on HTTP %d: %s", status, type(exc).__name__)
        phrase = _reason(status, reason)
        if 300 <= status < 400:
            location = headers.get("Location") or "(no Location)"
            message = (
                f"HTTP {status} {phrase}: the server redirects to {_safe_url(location)!r}, "
                "and aiocompute never follows redirects (none of the APIs redirects: is the "
                "base URL right, https rather than http, with its path prefix?)"
            )
        elif parsed is not None and parsed[1]:
            code, message = parsed[0], str(parsed[1])
        else:
            message = f"HTTP {status} {phrase}".strip()
            said = _beyond_status(readable, status, phrase)
            if said.strip():
                message += f": {excerpt(said, 120)}"
        if status == 401 and self._credential_hint:
            message += f" (check the credential: {self._credential_hint})"
        return api_error_for(
            status,
            message,
            code=code,
            body=readable,
            retry_after=retry_after,
            method=p.verb,
            url=p.where,
            request_id=_request_id(headers),
            headers=headers,
        )

    def _error_in_body(
        self, status: int, body: bytes, headers: Mapping[str, str], p: _Prepared
    ) -> APIError | None:
        """An error the API put inside a 2xx body (Workbench's RPC errors), or None."""
        if self._body_error_parser is None:
            return None
        try:
            parsed = self._body_error_parser(status, body, headers)
        except Exception as exc:
            # The API's own decoding reports a body it cannot read; this check only looks.
            logger.debug("body error parser failed on HTTP %d: %s", status, type(exc).__name__)
            return None
        if parsed is None:
            return None
        code, message = parsed
        return api_error_for(
            status,
            str(message),
            code=code,
            body=_readable(body, _content_type(headers)),
            method=p.verb,
            url=p.where,
            request_id=_request_id(headers),
            headers=headers,
        )

    # -- one HTTP try, shared by requests and streams

    async def _open(
        self,
        p: _Prepared,
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's, passed on)
        attempt: int,
        timeout_text: str,
        deadline: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one try and return its 2xx response, unread (the caller reads and releases
        it). Any other status raises the matching :class:`APIError` (3xx included: never
        followed); a failure to get one raises :class:`TransportError`. ``deadline`` bounds
        the wait for the status line and for an error body (streams, which have no total
        timeout)."""
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        session = self._pool.get()
        headers = await self._headers_for(p)
        request_view: RequestView | None = None
        if self._hooks:
            request_view = RequestView(p.verb, p.where, redacted_headers(headers), attempt)
            await call_hooks(self._hooks.request, request_view)
        self._warn_if_insecure(p)
        sent_at = time.monotonic()
        response: aiohttp.ClientResponse | None = None
        error: TransportError | None = None
        try:
            with anyio.fail_after(deadline):
                response = await session.request(
                    p.verb,
                    p.url,
                    params=p.query,
                    data=p.body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    proxy=self._proxy,
                    ssl=self._ssl,
                )
        except _MAPPED as exc:
            error = _map_error(exc, method=p.verb, url=p.where, timeout_text=timeout_text)
        if error is not None or response is None:
            # Raised outside the except block: aiohttp's exception holds the request's
            # headers (its request_info) and must not ride along as __context__.
            if response is not None:
                response.close()
            self._feedback(None, None)
            record_response(None)
            logger.debug("%s %s failed: %s", p.verb, p.where, error)
            raise error or TransportError("no response", method=p.verb, url=p.where)
        elapsed = time.monotonic() - sent_at
        status = response.status
        record_response(status)
        logger.debug("%s %s -> %d in %.3fs", p.verb, p.where, status, elapsed)
        try:
            if self._hooks.response:
                assert request_view is not None
                shown = redacted_headers(response.headers)
                view = ResponseView(status, shown, request_view, elapsed)
                await call_hooks(self._hooks.response, view)
        except BaseException:
            response.close()
            raise
        if 200 <= status < 300:
            return response
        raw = b""
        # The status alone is enough if the error body cannot be had in time.
        with contextlib.suppress(*_MAPPED):
            with anyio.fail_after(deadline):
                raw = await _read_bounded(response.content, ERROR_BODY_LIMIT)
        response.close()  # the rest of an error body is not worth reading
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        self._feedback(status, retry_after)
        raise self._api_error(
            status, response.reason, raw, response.headers, p, retry_after=retry_after
        )

    async def _with_retries(
        self,
        once: Callable[[int], Awaitable[T]],
        retry: RetryPolicy | None,
        idempotent: bool,
    ) -> T:
        attempts = itertools.count(1)
        return await call_with_retries(
            lambda: once(next(attempts)),
            retry if retry is not None else self._retry,
            idempotent=idempotent,
            rng=self._rng,
            sleep=self._sleep,
            on_retry=retry_recorder(self._on_retry),
        )

    # -- request

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the per-try HTTP timeout)
        authenticate: bool | None = None,
    ) -> Response:
        """Send a request (retrying per policy) and return the 2xx :class:`Response`.

        ``json`` is sent as a JSON body (None: no body), ``data`` as a form; ``params``
        become the query (None values dropped, bools as ``true``/``false``, lists
        repeated). ``idempotent`` must be stated: False (a launch, a stop) means retry
        only when the request never left. ``retry`` overrides the transport's policy for
        this call; ``timeout`` overrides ``Timeouts.total`` for each try. ``authenticate``
        forces auth headers on (True) or off (False); by default they go only to the base
        URL's origin.

        Raises :class:`APIError` subclasses for non-2xx answers, :class:`TransportError`
        when the server could not be reached or the exchange failed, and
        :class:`OutcomeUnknown` when a call that is not idempotent failed after it may
        have reached the server.
        """
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")
        if timeout is not None:
            _check_number("request", "timeout", timeout, allow_none=False)
        p = self._prepare(
            method,
            path,
            json=json,
            data=data,
            params=params,
            headers=headers,
            authenticate=authenticate,
        )
        total = self._timeouts.total if timeout is None else timeout
        client_timeout = self._timeouts._for_request(total)
        timeout_text = (
            f"after {total:g} s without a complete response"
            if total
            else "waiting for the response"
        )

        async def once(attempt: int) -> Response:
            return await self._request_once(p, client_timeout, attempt, timeout_text)

        unknown: TransportError | None = None
        try:
            return await self._with_retries(once, retry, idempotent)
        except TransportError as exc:
            if idempotent or not exc.sent or exc.outcome_unknown:
                raise
            unknown = exc
        # Outside the except block: the new error stands alone (its text says it all).
        raise OutcomeUnknown(
            f"{unknown.message}; the server may have received this {p.verb} and acted on it, "
            "so what it creates or deletes may exist (or be gone): look it up before trying "
            "again, as sending it again could make a duplicate",
            method=p.verb,
            url=p.where,
        )

    async def _request_once(
        self,
        p: _Prepared,
        client_timeout: aiohttp.ClientTimeout,
        attempt: int,
        timeout_text: str,
    ) -> Response:
        async with self._governed():
            response = await self._open(
                p, timeout=client_timeout, attempt=attempt, timeout_text=timeout_text
            )
            error: TransportError | None = None
            try:
                body = await response.read()
            except _MAPPED as exc:
                error = _map_error(exc, method=p.verb, url=p.where, timeout_text=timeout_text)
            finally:
                response.release()
            if error is not None:
                self._feedback(None, None)
                record_response(None)
                raise error
            status, headers = response.status, response.headers
            in_body = self._error_in_body(status, body, headers, p)
            if in_body is not None:
                code = in_body.code
                stands_for = code if isinstance(code, int) and 400 <= code < 600 else status
                self._feedback(stands_for, in_body.retry_after)
                raise in_body
            self._feedback(status, None)
            return Response(status, headers, body, p.verb, p.where)

    # -- stream

    def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stall_timeout: float | None = None,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
        authenticate: bool | None = None,
    ) -> AbstractAsyncContextManager[ByteStream]:
        """Open a long-lived streamed response: ``async with t.stream(...) as s:``.

        The stream is not bound by ``Timeouts.total``; instead each wait for the next chunk
        is bounded by ``stall_timeout`` (default ``Timeouts.stall``). Opening (connect and
        status) is retried like :meth:`request`, and a non-2xx status raises the same
        errors. Leaving the block in any way (end, break, error, cancellation) closes the
        connection at once. Reading the body is never retried here: a stream that broke
        halfway must be resumed by the caller, who knows what was already seen.
        """
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")
        stall = stall_timeout if stall_timeout is not None else self._timeouts.stall
        _check_number("stream", "stall_timeout", stall, allow_none=False)
        p = self._prepare(
            method,
            path,
            json=json,
            data=None,
            params=params,
            headers=headers,
            authenticate=authenticate,
        )
        return self._stream_context(p, stall, retry, idempotent)

    @contextlib.asynccontextmanager
    async def _stream_context(
        self, p: _Prepared, stall: float, retry: RetryPolicy | None, idempotent: bool
    ) -> AsyncIterator[ByteStream]:
        # Connect is bounded by its own timeout; the wait for the status line by the stall
        # timeout. Together they bound the opening, pool waits included.
        deadline = stall + (self._timeouts.connect or 0.0)
        timeout_text = f"opening the stream (no answer within {deadline:g} s)"

        async def open_once(attempt: int) -> ByteStream:
            # The governor's slot covers the opening, not the life of the stream.
            async with self._governed():
                response = await self._open(
                    p,
                    timeout=self._timeouts._for_stream(),
                    attempt=attempt,
                    timeout_text=timeout_text,
                    deadline=deadline,
                )
            self._feedback(response.status, None)
            return ByteStream(response, stall=stall, method=p.verb, url=p.where)

        stream = await self._with_retries(open_once, retry, idempotent)
        try:
            yield stream
        finally:
            stream._shut()
