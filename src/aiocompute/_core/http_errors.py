"""Errors at the HTTP edge, mapped once onto the error tree of :mod:`aiocompute._exceptions`.

aiohttp's exceptions are mapped here and nowhere else; the
:class:`~aiocompute._core.transport.Transport` (and the
:class:`~aiocompute._core.responses.ByteStream` it opens) raise what this module builds:

============================================  ==========================================
what happened                                 raised
============================================  ==========================================
2xx                                           a :class:`Response` is returned
3xx (never followed)                          :class:`APIError` naming the ``Location``
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

:func:`map_error` maps an aiohttp / socket / timeout exception; :func:`api_error` builds the
error of a non-2xx answer, with the API's own message when its ``ErrorParser`` can read
one; :func:`error_in_body` finds an error an API put inside a 2xx body. URLs in errors are
shown by :func:`safe_url` (no user info, credential-like query values redacted).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
from yarl import URL

from .._exceptions import APIError, TransportError, api_error_for, excerpt, redact
from .bodies import content_type_of, readable

__all__ = [
    "AMBIGUOUS_STATUSES",
    "MAPPED",
    "ErrorParser",
    "api_error",
    "error_in_body",
    "map_error",
    "safe_url",
]

logger = logging.getLogger("aiocompute.transport")

#: API-specific error decoder: ``(status, body, headers) -> (code, message)`` taken from the
#: API's error shape, or None to fall back to a generic "HTTP 502 Bad Gateway: ..." message.
ErrorParser = Callable[[int, bytes, Mapping[str, str]], "tuple[Any, str] | None"]

# --------------------------------------------------------------------------- URLs


def safe_url(url: str | URL) -> str:
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


# --------------------------------------------------------------------------- failures

_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
)
_DNS_ERROR: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ClientConnectorDNSError", None),) if t is not None
)

#: What :func:`map_error` maps to TransportError; anything else (bugs, cancellation) passes.
MAPPED = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)


def map_error(exc: BaseException, *, method: str, url: str, timeout_text: str) -> TransportError:
    """Map an aiohttp / socket / timeout exception onto :class:`TransportError`.

    ``timeout_text`` completes "timed out ..." for a timeout of the caller's own.
    """

    def err(
        message: str, *, sent: bool, retryable: bool = True, timed_out: bool = False
    ) -> TransportError:
        return TransportError(
            message, sent=sent, retryable=retryable, method=method, url=url, timed_out=timed_out
        )

    try:
        detail = str(exc) or type(exc).__name__
    except Exception:  # some aiohttp errors cannot print themselves without request info
        detail = type(exc).__name__
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
        return err(f"timed out reading the response: {detail}", sent=True, timed_out=True)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return err(f"timed out {timeout_text}", sent=True, timed_out=True)
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


#: Statuses that leave a create or delete in doubt: a gateway's "bad gateway", "unavailable"
#: or "timed out" may come after the server behind it took the request.
AMBIGUOUS_STATUSES = frozenset({502, 503, 504})

# --------------------------------------------------------------------------- answers

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


def _reason(status: int, reason: str | None) -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _beyond_status(text: str, status: int, reason: str) -> str:
    """``text`` if it says more than the status and its reason ("401 Unauthorized" twice
    from an HTML error page says nothing new), else ""."""
    rest = text.lower().replace(str(status), " ")
    if reason:
        rest = rest.replace(reason.lower(), " ")
    rest = re.sub(r"\b(?:http|error)\b", " ", rest)
    return text if re.search(r"\w", rest) else ""


def api_error(
    status: int,
    reason: str | None,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    url: str,
    retry_after: float | None,
    parser: ErrorParser | None,
    credential_hint: str | None,
) -> APIError:
    """The :class:`APIError` subclass for a non-2xx answer (``url`` already redacted).

    The message is the API's own (read by ``parser``) when it has one, else the status and
    a short excerpt of the body. A 3xx names where it redirects to; a 401 names where the
    credential comes from (``credential_hint``).
    """
    readable_body = readable(body, content_type_of(headers))
    code: Any = None
    parsed: tuple[Any, str] | None = None
    if parser is not None and not 300 <= status < 400:
        try:
            parsed = parser(status, body, headers)
        except Exception as exc:
            # A parser bug must not hide the HTTP error the server reported.
            logger.debug("error parser failed on HTTP %d: %s", status, type(exc).__name__)
    phrase = _reason(status, reason)
    if 300 <= status < 400:
        location = headers.get("Location") or "(no Location)"
        message = (
            f"HTTP {status} {phrase}: the server redirects to {safe_url(location)!r}, "
            "and aiocompute never follows redirects (none of the APIs redirects: is the "
            "base URL right, https rather than http, with its path prefix?)"
        )
    elif parsed is not None and parsed[1]:
        code, message = parsed[0], str(parsed[1])
    else:
        message = f"HTTP {status} {phrase}".strip()
        said = _beyond_status(readable_body, status, phrase)
        if said.strip():
            message += f": {excerpt(said, 120)}"
    if status == 401 and credential_hint:
        message += f" (check the credential: {credential_hint})"
    return api_error_for(
        status,
        message,
        code=code,
        body=readable_body,
        retry_after=retry_after,
        method=method,
        url=url,
        request_id=_request_id(headers),
        headers=headers,
    )


def error_in_body(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    url: str,
    parser: ErrorParser | None,
) -> APIError | None:
    """An error the API put inside a 2xx body (Workbench's RPC errors), found by ``parser``;
    None when there is none (or no parser)."""
    if parser is None:
        return None
    try:
        parsed = parser(status, body, headers)
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
        body=readable(body, content_type_of(headers)),
        method=method,
        url=url,
        request_id=_request_id(headers),
        headers=headers,
    )
