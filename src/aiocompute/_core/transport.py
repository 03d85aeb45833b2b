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
import html
import json as _json
import logging
import math
import random
import re
import ssl
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from http import HTTPStatus
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlencode

import aiohttp
import anyio
from attrs import field, frozen
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._exceptions import (
    APIError,
    ProtocolError,
    TransportError,
    api_error_for,
    excerpt,
    redact,
    register_secret,
)
from .._version import __version__
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
    "RateGovernor",
    "Response",
    "StaticAuth",
    "Timeouts",
    "Transport",
    "default_user_agent",
]

logger = logging.getLogger("aiocompute.transport")

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


_decode_json_text = _json.JSONDecoder().decode


def _loads_json(body: bytes) -> Any:
    """``json.loads(body)``, with the common case first: UTF-8 without a BOM is decoded
    here, skipping json.loads' detection of the encoding. Anything that fails that way (a
    BOM, UTF-16 or UTF-32, invalid JSON) is parsed again by json.loads, so the result or
    the error is json.loads' own."""
    try:
        return _decode_json_text(body.decode())
    except (ValueError, RecursionError):
        pass
    return _json.loads(body)


class Response(NamedTuple):
    """A complete, successful (2xx) HTTP response.

    ``headers`` is case-insensitive. ``url`` is the redacted URL that was requested.
    (A named tuple, not an attrs class: one is made per request, and a tuple is built in C
    without a call per field.)
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
            return _loads_json(self.body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            content_type = _content_type(self.headers)
            if _looks_like_html(self.body, content_type):
                message = "expected JSON, got an HTML page (from a proxy or a login page?)"
            else:
                message = f"expected JSON, got an invalid body ({type(exc).__name__}: {exc})"
            # from None: the JSONDecodeError adds nothing the message does not say.
            raise ProtocolError(
                message,
                status=self.status,
                body=_readable(self.body, content_type),
                method=self.method,
                url=self.url,
            ) from None

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
    # ``where`` (a str or a _Where) is only formatted into an error message.
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


class RateGovernor(Protocol):
    """Paces HTTP tries (implemented in ``_core.fanout``).

    ``acquire()`` is awaited before each try. ``feedback(status, retry_after)`` is called
    after each try that got an HTTP status, or with ``status=None`` after a try that failed
    to get one (a :class:`TransportError`); it is not called when a try is cancelled.

    A governor may also have ``try_acquire() -> bool`` (``_core.fanout``'s does): it is
    asked first, and ``acquire()`` is awaited only when it answers False.
    """

    async def acquire(self) -> None:
        """Wait until the next try may start."""
        ...

    def feedback(self, status: int | None, retry_after: float | None) -> None:
        """Learn from the outcome of a try."""
        ...


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


class _Where:
    """``"POST https://host/path?query"`` with the URL redacted, for errors and log lines.

    Worked out when first formatted: most requests succeed without logging, and then never
    need it.
    """

    __slots__ = ("_query", "_text", "_url", "verb")

    def __init__(self, verb: str, url: str, query: list[tuple[str, str]] | None) -> None:
        self.verb = verb
        self._url = url
        self._query = query
        self._text: str | None = None

    @property
    def url(self) -> str:
        """The redacted URL."""
        text = self._text
        if text is None:
            text = self._text = _safe_url(_with_query(self._url, self._query))
        return text

    def __str__(self) -> str:
        return f"{self.verb} {self.url}"


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

# Distinct URLs whose origin check (or response URL text) is remembered per transport.
_ORIGIN_CACHE_SIZE = 1024

# A path yarl writes back exactly as given: only unreserved characters, no percent escapes
# (yarl may decode or re-case them) and no segment starting with "." ("." and ".." are
# resolved). Conservative on purpose: anything else takes yarl's own text.
_PLAIN_PATH = re.compile(r"(?:/(?!\.)[A-Za-z0-9_~.-]*)*")

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class _Prepared(NamedTuple):
    """What every try of one :meth:`Transport.request` sends, worked out once."""

    verb: str
    #: The URL sent: a yarl URL when the SDK built it (see Transport._plain_url), else text.
    url: str | URL
    query: Any
    body: Any
    content_type: str | None
    extra: Mapping[str, str]
    use_auth: bool
    #: The response URL's text when there is no redirect, if known without yarl.
    sent_text: str | None
    #: Its ``total`` is the request's total timeout.
    client_timeout: aiohttp.ClientTimeout

    @property
    def where(self) -> _Where:
        """The request for an error message or a log line (made when one needs it)."""
        return _Where(self.verb, str(self.url), self.query)


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
        # Malformed response, refused proxy, too many redirects: trying again won't help.
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
        try:
            with anyio.fail_after(self._stall):
                chunk = await self._response.content.readany()
        except _MAPPED as exc:
            self._shut()
            if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
                raise TransportError(
                    f"stream stalled: no data for {self._stall:g} s",
                    sent=True,
                    retryable=True,
                    method=self.method,
                    url=self.url,
                ) from None
            raise _map_error(
                exc, method=self.method, url=self.url, timeout_text="reading the stream"
            ) from exc
        except BaseException:
            self._shut()  # cancelled mid-read: the connection is in an unknown state
            raise
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


class Transport:
    """An HTTP client bound to one API base URL: one ``aiohttp.ClientSession``, created
    lazily inside the running loop, closed by :meth:`aclose` or ``async with``.

    ``path`` arguments are joined onto ``base_url`` (``"https://h/api"`` + ``"/v1/x"`` =
    ``"https://h/api/v1/x"``); an absolute ``http(s)://`` URL is used as is. Auth headers
    are sent to the base URL's origin only, unless a call says ``authenticate=True``.

    ``user_agent``, if given, is put in front of the default
    ``aiocompute/<v> python/<x.y> aiohttp/<v>``. ``headers`` are sent with every request.
    ``on_retry(attempt, error, delay)`` is called before each retry wait.

    A transport garbage-collected while open emits a :class:`ResourceWarning` and closes
    its connections best-effort; aiohttp's own "Unclosed client session" report is then
    avoided, except when the transport and its session die together in a reference cycle.
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
        user_agent: str | None = None,
        governor: RateGovernor | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._base = _check_base_url(base_url)
        self._base_url = str(self._base).rstrip("/")
        # yarl's text of the base URL is yarl's canonical form, so the text of a URL joined
        # onto it with a plain path is known without parsing (see _joined_text); not with
        # user info in the base, which a response URL leaves out.
        self._base_is_plain = self._base.user is None and self._base.password is None
        # The scheme, authority and length of the base URL's "scheme://host[:port]", which
        # _plain_url puts before a path; None when the base's text does not start that way
        # (then yarl parses every URL).
        scheme, authority = self._base.scheme, self._base.raw_authority
        origin = f"{scheme}://{authority}"
        self._plain_origin: tuple[str, str, int] | None = (
            (scheme, authority, len(origin))
            if self._base_is_plain and self._base_url.startswith(origin)
            else None
        )
        self._origin = (self._base.scheme, self._base.host, self._base.port)
        # Credentials in the URL itself (basic auth) are credentials like any other.
        register_secret(self._base.password)
        for name, value, kind in (
            ("timeouts", timeouts, Timeouts),
            ("limits", limits, PoolLimits),
            ("retry", retry, RetryPolicy),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"Transport {name}= must be a {kind.__name__}, got {value!r}")
        if user_agent is not None and (not isinstance(user_agent, str) or "\n" in user_agent):
            raise ValueError("user_agent must be a single-line string")
        self._auth: AuthProvider = auth if auth is not None else NoAuth()
        self._timeouts = timeouts
        # What every request without a timeout= of its own gets (also the session's).
        self._request_timeout = timeouts._for_request(timeouts.total)
        self._limits = limits
        self._retry = retry
        self._error_parser = error_parser
        self._governor = governor
        # RateGovernor's; a governor of another kind (acquire and feedback only) goes without.
        self._try_acquire: Callable[[], bool] | None = getattr(governor, "try_acquire", None)
        self._on_retry = on_retry
        agent = default_user_agent()
        self._default_headers: dict[str, str] = {
            "User-Agent": f"{user_agent} {agent}" if user_agent else agent,
            "Accept": "application/json",
        }
        self._default_headers.update(_checked_headers(headers, "Transport headers"))
        # Headers of a request without headers= of its own, by (Content-Type, with auth),
        # for auth providers whose headers never change (StaticAuth, NoAuth).
        self._header_cache: dict[tuple[str | None, bool], CIMultiDictProxy[str]] = {}
        # Whether a URL has the base URL's origin (auth headers go only there), by URL.
        self._origin_cache: dict[str, bool] = {}
        # Response URLs as text without user info (see _response_url).
        self._url_text_cache: dict[URL, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
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
        """True after :meth:`aclose`."""
        return self._closed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={_safe_url(self._base_url)!r})"

    async def __aenter__(self) -> Transport:
        if self._closed:
            raise RuntimeError("this Transport is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session and its connections. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = getattr(self, "_session", None)  # __init__ may have failed early
        if session is None or session.closed:
            return
        # Must never raise (warnings may be turned into errors; the loop may be gone).
        with contextlib.suppress(Exception):
            _warn(
                f"unclosed {self!r}: use `async with` or `await transport.aclose()`",
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

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this Transport is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                limit_per_host=self._limits.max_connections_per_host,
                keepalive_timeout=self._limits.keepalive_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._request_timeout,
                raise_for_status=False,
            )
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this Transport was first used on another event loop; "
                "create one Transport per event loop"
            )
        return self._session

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

    def _joined_text(self, url: str, joined: bool, query: object) -> str | None:
        """``_without_userinfo(URL(url))`` without parsing, for a URL joined onto the base
        with a plain path and no query (yarl would give back the same text); else None."""
        if (
            joined
            and query is None
            and self._base_is_plain
            and _PLAIN_PATH.fullmatch(url, len(self._base_url)) is not None
        ):
            return url
        return None

    def _plain_url(self, text: str) -> str | URL:
        """``URL(text)`` for a text from :meth:`_joined_text`, built from its parts: parsing
        it would give back the very same URL, and costs several times more per request."""
        origin = self._plain_origin
        if origin is None:
            return text
        scheme, authority, skip = origin
        return URL.build(scheme=scheme, authority=authority, path=text[skip:], encoded=True)

    def _use_auth(self, url: str, authenticate: bool | None, joined: bool = False) -> bool:
        if authenticate is not None:
            return authenticate
        if joined:
            return True  # a path joined onto the base URL: the base's origin
        same = self._origin_cache.get(url)
        if same is None:
            try:
                target = URL(url)
            except ValueError:
                same = False
            else:
                # Effective ports: "https://h:443" and "https://h" are one origin (yarl's
                # origin() keeps an explicit default port, and then they differ).
                same = (target.scheme, target.host, target.port) == self._origin
            if len(self._origin_cache) >= _ORIGIN_CACHE_SIZE:
                self._origin_cache.clear()  # ids in paths: keep the cache bounded
            self._origin_cache[url] = same
        return same

    def _response_url(self, url: URL) -> str:
        """``_safe_url(url)``, remembering the text without user info per URL (yarl's
        str() is most of the cost); redact() runs each time, as secrets may be added."""
        text = self._url_text_cache.get(url)
        if text is None:
            text = _without_userinfo(url)
            if len(self._url_text_cache) >= _ORIGIN_CACHE_SIZE:
                self._url_text_cache.clear()  # ids in paths: keep the cache bounded
            self._url_text_cache[url] = text
        return redact(text)

    def _fixed_auth_headers(self) -> Mapping[str, str] | None:
        """The auth headers if the provider's never change (registered at construction)."""
        auth = self._auth
        # Exact types: a subclass may compute its headers.
        if type(auth) is StaticAuth:
            return auth._headers
        if type(auth) is NoAuth:
            return _NO_HEADERS
        return None

    async def _headers_for(
        self, extra: Mapping[str, str], content_type: str | None, use_auth: bool
    ) -> CIMultiDict[str] | CIMultiDictProxy[str]:
        if not extra:
            cached = self._header_cache.get((content_type, use_auth))
            if cached is not None:
                return cached
            fixed = self._fixed_auth_headers()
            if fixed is not None:
                merged = CIMultiDict(self._default_headers)
                if content_type is not None:
                    merged["Content-Type"] = content_type
                if use_auth:
                    merged.update(fixed)
                # A read-only view: aiohttp copies the headers it is given, never changes them.
                cached = self._header_cache[(content_type, use_auth)] = CIMultiDictProxy(merged)
                return cached
        merged = CIMultiDict(self._default_headers)
        if content_type is not None:
            merged["Content-Type"] = content_type
        if use_auth:
            auth_headers = await self._auth.headers()
            for name, value in auth_headers.items():
                # Providers may refresh tokens: remember each one for redaction.
                if _SENSITIVE_HEADER.search(name):
                    _register_credential(value)
            merged.update(auth_headers)
        merged.update(extra)
        return merged

    def _feedback(self, status: int | None, retry_after: float | None) -> None:
        if self._governor is not None:
            self._governor.feedback(status, retry_after)

    def _api_error(
        self,
        status: int,
        reason: str | None,
        body: bytes,
        headers: Mapping[str, str],
        *,
        method: str,
        url: str,
        retry_after: float | None,
    ) -> APIError:
        parsed: tuple[Any, str] | None = None
        if self._error_parser is not None:
            try:
                parsed = self._error_parser(status, body, headers)
            except Exception as exc:
                # A parser bug must not hide the HTTP error the server reported.
                logger.debug("error parser failed on HTTP %d: %s", status, type(exc).__name__)
        content_type = _content_type(headers)
        readable = _readable(body, content_type)
        code: Any = None
        if parsed is not None and parsed[1]:
            code, message = parsed[0], str(parsed[1])
        else:
            message = f"HTTP {status} {_reason(status, reason)}".strip()
            if readable.strip():
                message += f": {excerpt(readable, 120)}"
        return api_error_for(
            status,
            message,
            code=code,
            body=readable,
            retry_after=retry_after,
            method=method,
            url=url,
        )

    # -- request

    def request(
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
        timeout: float | None = None,  # per-try HTTP timeout
        authenticate: bool | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """Send a request (retrying per policy) and return the 2xx :class:`Response`.

        ``json`` is sent as a JSON body (None: no body), ``data`` as a form; ``params``
        become the query (None values dropped, bools as ``true``/``false``, lists
        repeated). ``idempotent`` must be stated: False (a launch, a stop) means retry
        only when the request never left. ``retry`` overrides the transport's policy for
        this call; ``timeout`` overrides ``Timeouts.total`` for each try. ``authenticate``
        forces auth headers on (True) or off (False); by default they go only to the base
        URL's origin.

        Raises :class:`APIError` subclasses for non-2xx answers, :class:`TransportError`
        when the server could not be reached or the exchange failed. The arguments are
        checked at once: a bad one raises here, before anything is awaited.
        """
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")
        if timeout is not None:
            _check_number("request", "timeout", timeout, allow_none=False)
        verb = method.upper()
        url, joined = self._resolve(path)
        query = None if params is None else _encode_params(params)
        body, content_type = (
            (None, None)
            if json is None and data is None
            else _encode_body(json, data, _Where(verb, url, query))
        )
        extra = {} if headers is None else _checked_headers(headers, _Where(verb, url, query))
        # A path joined onto the base URL has the base's origin: auth goes there.
        use_auth = (
            True if joined and authenticate is None else self._use_auth(url, authenticate, joined)
        )
        # The response URL's text when there is no redirect, if known without yarl.
        sent_text = self._joined_text(url, joined, query)
        target = url if sent_text is None else self._plain_url(sent_text)
        # Without a timeout of its own, a request uses the one made at construction.
        client_timeout = (
            self._request_timeout if timeout is None else self._timeouts._for_request(timeout)
        )

        prepared = _Prepared(
            verb,
            target,
            query,
            body,
            content_type,
            extra,
            use_auth,
            sent_text,
            client_timeout,
        )
        # The coroutine of the first try itself: most calls succeed at once, and then need
        # neither the retry driver nor a coroutine of request's own around the try.
        return self._send(prepared, retry if retry is not None else self._retry, idempotent)

    async def _send(
        self,
        p: _Prepared,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Response:
        """One try of :meth:`request`. Given ``retry`` (the first try), a failure goes on to
        the retry driver, whose budget starts when this try does (not when request() was
        called: a coroutine may wait before it is awaited); its tries come back here
        without one. The try is written out here, not in a coroutine of its own: most calls
        succeed at once, and one coroutine fewer per request is cheaper to run and to keep
        in memory while it waits."""
        started = time.monotonic() if retry is not None else 0.0
        try:
            session = self._ensure_session()
            governor = self._governor
            if governor is not None:
                # Most requests need not wait: then no coroutine is made for acquire().
                try_acquire = self._try_acquire
                if try_acquire is None or not try_acquire():
                    await governor.acquire()
            sent_headers: CIMultiDict[str] | CIMultiDictProxy[str] | None = (
                None if p.extra else self._header_cache.get((p.content_type, p.use_auth))
            )
            if sent_headers is None:
                sent_headers = await self._headers_for(p.extra, p.content_type, p.use_auth)
            sent_at = time.monotonic()
            try:
                async with session.request(
                    p.verb,
                    p.url,
                    params=p.query,
                    data=p.body,
                    headers=sent_headers,
                    timeout=p.client_timeout,
                ) as resp:
                    status = resp.status
                    ok = 200 <= status < 300
                    raw = (
                        await resp.read()
                        if ok
                        else await _read_bounded(resp.content, ERROR_BODY_LIMIT)
                    )
                    if not ok:
                        resp.close()  # the rest of an error body is not worth reading
                    got_headers = resp.headers
                    reason = resp.reason
                    final_url = (
                        redact(p.sent_text)
                        if p.sent_text is not None and not resp.history
                        else self._response_url(resp.url)
                    )
            except _MAPPED as exc:
                total = p.client_timeout.total
                timeout_text = (
                    f"after {total:g} s without a complete response"
                    if total
                    else "waiting for the response"
                )
                where = p.where
                mapped = _map_error(exc, method=p.verb, url=where.url, timeout_text=timeout_text)
                self._feedback(None, None)
                record_response(None)
                logger.debug(
                    "%s failed after %.3fs: %s", where, time.monotonic() - sent_at, mapped.message
                )
                raise mapped from exc
            hint = got_headers.get("Retry-After")
            retry_after = None if hint is None else parse_retry_after(hint)
            if governor is not None:
                governor.feedback(status, retry_after)
            record_response(status)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s -> %d in %.3fs", p.where, status, time.monotonic() - sent_at)
            if ok:
                return Response(status, got_headers, raw, p.verb, final_url)
            raise self._api_error(
                status,
                reason,
                raw,
                got_headers,
                method=p.verb,
                url=p.where.url,
                retry_after=retry_after,
            )
        except Exception as exc:
            if retry is None:
                raise
            # Retried outside the except block, so that a later error is not shown as
            # raised "during handling of" this one.
            error = exc
        return await call_with_retries(
            partial(self._send, p),
            retry,
            idempotent=idempotent,
            rng=self._rng,
            sleep=self._sleep,
            on_retry=retry_recorder(self._on_retry),
            first_error=error,
            started=started,
        )

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
        verb = method.upper()
        url, joined = self._resolve(path)
        query = _encode_params(params)
        safe = _safe_url(_with_query(url, query))
        where = f"{verb} {safe}"
        body, content_type = _encode_body(json, None, where)
        extra = _checked_headers(headers, where)
        use_auth = self._use_auth(url, authenticate, joined)
        # Connect is bounded by its own timeout; the wait for the status line by the stall
        # timeout. Together they bound the opening, pool waits included.
        open_deadline = stall + (self._timeouts.connect or 0.0)

        async def open_once() -> ByteStream:
            session = self._ensure_session()
            if self._governor is not None:
                await self._governor.acquire()
            sent_headers = await self._headers_for(extra, content_type, use_auth)
            started = time.monotonic()
            resp: aiohttp.ClientResponse | None = None
            try:
                with anyio.fail_after(open_deadline):
                    resp = await session.request(
                        verb,
                        url,
                        params=query,
                        data=body,
                        headers=sent_headers,
                        timeout=self._timeouts._for_stream(),
                    )
            except _MAPPED as exc:
                if resp is not None:
                    resp.close()
                self._feedback(None, None)
                record_response(None)
                error = _map_error(
                    exc,
                    method=verb,
                    url=safe,
                    timeout_text=f"opening the stream (no answer within {open_deadline:g} s)",
                )
                logger.debug("%s %s (stream) failed: %s", verb, safe, error.message)
                raise error from exc
            try:
                status = resp.status
                record_response(status)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                logger.debug(
                    "%s %s (stream) -> %d in %.3fs", verb, safe, status, time.monotonic() - started
                )
                if 200 <= status < 300:
                    self._feedback(status, retry_after)
                    return ByteStream(resp, stall=stall, method=verb, url=safe)
                raw = b""
                # The status alone is enough if the error body cannot be had in time.
                with contextlib.suppress(*_MAPPED), anyio.fail_after(stall):
                    raw = await _read_bounded(resp.content, ERROR_BODY_LIMIT)
                resp.close()
                self._feedback(status, retry_after)
                raise self._api_error(
                    status,
                    resp.reason,
                    raw,
                    resp.headers,
                    method=verb,
                    url=safe,
                    retry_after=retry_after,
                )
            except BaseException:
                resp.close()
                raise

        return self._stream_context(open_once, retry, idempotent)

    @contextlib.asynccontextmanager
    async def _stream_context(
        self,
        open_once: Callable[[], Awaitable[ByteStream]],
        retry: RetryPolicy | None,
        idempotent: bool,
    ) -> AsyncIterator[ByteStream]:
        stream = await call_with_retries(
            open_once,
            retry if retry is not None else self._retry,
            idempotent=idempotent,
            rng=self._rng,
            sleep=self._sleep,
            on_retry=retry_recorder(self._on_retry),
        )
        try:
            yield stream
        finally:
            stream._shut()
