"""The one error tree of aiocompute.

Every error the SDK raises on purpose is an :class:`AioComputeError`::

    AioComputeError
    ├── ConfigError               a setting is missing (also a ValueError; in _core.config)
    ├── ClientClosedError         a call on a client that was closed (also a RuntimeError)
    ├── TransportError            could not talk to the server (connect, TLS, timeouts); .retryable
    │   └── OutcomeUnknown        a create or delete may or may not have happened
    ├── APIError                  the server answered "no": .status, .code, .message, .body,
    │   │                         .request_id, .headers (redacted)
    │   ├── AuthenticationError   401/403 or an RPC "permission denied"
    │   ├── NotFoundError         404 or an RPC "not found"
    │   ├── RateLimitError        429; .retry_after
    │   ├── ConflictError         409: the request clashes with the resource's state or a limit
    │   │   └── UsageLimitExceeded  a quota of the account or instance is used up
    │   └── ServerError           5xx
    ├── ProtocolError             the answer was not what the API promises (HTML, bad JSON)
    │   └── StreamDecodeError     a streamed value was malformed: .offset (byte), .excerpt
    └── WaitError                 .last, .history [(state, time)], .attempts, .elapsed
        ├── WaitTimeout           the deadline passed first
        └── UnreachableState      a terminal state was reached from which the target can't come

HTTP-level failures are mapped once, at the transport edge (``_core.http_errors``); an API's
own error envelope (e.g. Workbench's ``{"error": {...}}`` in a 200 body) is mapped by that
API's ``_protocol`` module through :func:`api_error_for`. No error ever carries a credential:
bodies, headers and URLs are scrubbed by :func:`redact` before they are stored, and errors
mapped from aiohttp are raised without aiohttp's exception in their ``__cause__`` or
``__context__`` (its ``request_info`` holds the request headers).

:class:`InsecureTransportWarning` is the one warning of the tree: a credential about to be
sent over plain ``http://`` to a host that is not loopback.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "SECRET_HEADER",
    "APIError",
    "AioComputeError",
    "AuthenticationError",
    "ClientClosedError",
    "ConflictError",
    "InsecureTransportWarning",
    "NotFoundError",
    "OutcomeUnknown",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "StreamDecodeError",
    "TransportError",
    "UnreachableState",
    "UsageLimitExceeded",
    "WaitError",
    "WaitTimeout",
    "api_error_for",
    "excerpt",
    "naming_the_missing",
    "redact",
    "redact_headers",
    "redact_window",
]

#: How many characters of a body an error keeps.
EXCERPT_CHARS = 200

_SECRET_KEYS = (
    r"(?:api[_-]?key|apikey|access_token|refresh_token|id_token|token|password|secret|cookie)"
)
# A value after "Bearer " or "Authorization:" is redacted unless it is an ordinary word
# ("missing or invalid bearer token" is prose, not a credential): a plain word is lower
# case after an optional capital, shorter than any real token, and not joined by a token
# character to more text (a sentence's full stop is fine, "abc.def" is not a word).
_NOT_A_WORD = r"(?!(?-i:[A-Za-z][a-z]{0,19})\b(?![.~+/=-]\w))"
# Values that look like credentials, wherever they appear in text we keep.
_SECRET_PATTERNS = (
    re.compile(rf"(?i)(authorization\s*[:=]\s*(?:bearer\s+|basic\s+)?){_NOT_A_WORD}[^\s,;\"']+"),
    re.compile(rf"(?i)(bearer\s+){_NOT_A_WORD}[A-Za-z0-9._~+/=-]+"),
    # key=value (query strings, forms, logs) and "key": "value" (JSON); not prose such as
    # "token: set WORKBENCH_API_KEY", which holds no value to hide.
    re.compile(rf"(?i)(\b{_SECRET_KEYS}\s*=\s*)[^\s,;\"'&]+"),
    re.compile(rf"(?i)(\"{_SECRET_KEYS}\"\s*:\s*\")[^\"]+"),
)

# Exact secrets registered by clients at construction, scrubbed wherever they appear.
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a credential so that :func:`redact` removes it from any text.

    Only values of 6 or more characters are kept: shorter ones would blank innocent text.
    """
    if value and len(value) >= 6:
        _known_secrets.add(value)


# user:password in a URL's authority.
_URL_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s@]+@")


# Every match of _URL_USERINFO holds an "@", and every match of _SECRET_PATTERNS one of these
# words in some case. ASCII text without them cannot match, so redact() skips those regexes
# (most URLs and messages; redact runs on every request's URL). Outside ASCII the regexes
# always run: (?i) also matches look-alikes there, such as "ſ" (long s) for "s".
_SECRET_WORDS = ("authorization", "bearer", "key", "token", "password", "secret", "cookie")


def redact(text: str) -> str:
    """Return ``text`` with anything that looks like a credential replaced by ``***``."""
    ascii_only = text.isascii()
    if not ascii_only or "@" in text:
        text = _URL_USERINFO.sub(r"\1***@", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    if ascii_only:
        # The replacements above only remove text and add "*": the words are not created.
        lowered = text.lower()
        for word in _SECRET_WORDS:
            if word in lowered:
                break
        else:
            return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def redact_window(text: str) -> str:
    """:func:`redact` for a piece cut out of a longer text: a registered secret cut in two
    at either edge (its start or end missing) is redacted too."""
    text = redact(text)
    for secret in _known_secrets:
        for size in range(min(len(secret), len(text)) - 1, 5, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + "***"
                break
        for size in range(min(len(secret), len(text)) - 1, 5, -1):
            if text.startswith(secret[-size:]):
                text = "***" + text[size:]
                break
    return text


def excerpt(body: bytes | str | None, limit: int = EXCERPT_CHARS) -> str:
    """A short, credential-free, single-line excerpt of a response body for error messages."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    # Redacted before it is cut, so that a credential cut in two is still found whole.
    text = redact(" ".join(text.split()))
    if len(text) > limit:
        text = redact_window(text[: limit - 1]) + "…"
    return text


class AioComputeError(Exception):
    """Base of every error aiocompute raises on purpose."""


class ClientClosedError(AioComputeError, RuntimeError):
    """A call on a client (or a wait on its poller) after the client was closed.

    Also a :class:`RuntimeError`, which is what a closed client raised before.
    """


class InsecureTransportWarning(UserWarning):
    """A credential is about to be sent over plain ``http://`` to a host that is not loopback.

    Emitted once per client. Use ``https://``, or silence it with :mod:`warnings` filters
    for a network you trust.
    """


class TransportError(AioComputeError):
    """Could not talk to the server: connection refused, TLS failure, DNS, timeouts.

    ``retryable`` says whether the call may be tried again. ``sent`` is False only when the
    request surely never reached the server (connection refused or failed before sending),
    which is the only case in which a non-idempotent call (a launch) may be retried.
    ``timed_out`` is True when no answer came in time (the request may still be on its way
    to the server, or being acted on). ``outcome_unknown`` is True when a call that creates
    or destroys something may have been received and acted on (see :class:`OutcomeUnknown`).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        sent: bool = True,
        method: str | None = None,
        url: str | None = None,
        outcome_unknown: bool = False,
        timed_out: bool = False,
    ) -> None:
        self.message = redact(message)
        self.retryable = retryable
        self.sent = sent
        self.outcome_unknown = outcome_unknown
        self.timed_out = timed_out
        self.method = method
        self.url = redact(url) if url else None
        where = f" ({method} {self.url})" if method and self.url else ""
        super().__init__(f"{self.message}{where}")


class OutcomeUnknown(TransportError):
    """A call that is not idempotent (a launch, a delete) failed after its request may have
    reached the server: the resource may exist (or be gone) although no answer said so.

    Raised after a cut connection, a timeout, or a 502/503/504 (``status``) from something
    between the client and the server. Creates are reconciled first (see "Launching
    safely" in the docs): this is raised only when that could not tell what happened.

    Never ``retryable``: sending it again could create a duplicate. ``token`` is the client
    token the create carried, if the API has a field for one (None otherwise); ``lookup``
    says in words which call finds the resource; ``candidates`` are the ids of resources
    that may be the one created (several, or one that may be another caller's);
    ``find()``, when not None, runs that lookup again later and returns what it finds.
    ``reason`` is the failure itself in a few words ("HTTP 502 Bad Gateway").
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        token: str | None = None,
        lookup: str | None = None,
        candidates: Sequence[str] = (),
        find: Callable[[], Awaitable[Sequence[Any]]] | None = None,
        status: int | None = None,
        timed_out: bool = False,
        reason: str | None = None,
    ) -> None:
        self.token = token
        self.reason = reason or message
        self.lookup = lookup
        self.candidates = tuple(candidates)
        self.find = find
        self.status = status
        super().__init__(
            message,
            retryable=False,
            sent=True,
            method=method,
            url=url,
            outcome_unknown=True,
            timed_out=timed_out,
        )


#: Header names whose values are credentials: registered for redaction when sent, and
#: shown as ``***`` in errors, logs and the views given to hooks.
SECRET_HEADER = re.compile(r"(?i)authorization|cookie|token|secret|password|api[-_]?key|credential")


def redact_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only, case-insensitive copy of ``headers`` with every credential-like value
    replaced by ``***`` (and credentials in the others redacted)."""
    return CIMultiDictProxy(
        CIMultiDict(
            (name, "***" if SECRET_HEADER.search(name) else redact(str(value)))
            for name, value in (headers or {}).items()
        )
    )


class APIError(AioComputeError):
    """The server answered and said no.

    Attributes: ``status`` (HTTP status; 200 for an RPC error inside a 200 body), ``code``
    (the API's own error code, if any), ``message`` (the server's message), ``body`` (a short,
    redacted excerpt of the response body), ``method`` / ``url`` of the request,
    ``retry_after`` (seconds the server asked to wait, e.g. with a 503, else None),
    ``request_id`` (the server's id for the request, from ``X-Request-Id`` or the like, to
    quote to its operators; None if it sent none) and ``headers`` (the response headers,
    credentials redacted).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: Any = None,
        body: bytes | str | None = None,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.message = redact(message)
        self.status = status
        self.code = code
        self.body = excerpt(body)
        self.method = method
        self.url = redact(url) if url else None
        self.request_id = redact(request_id) if request_id else None
        self.headers = redact_headers(headers)
        parts = [self.message]
        # "HTTP 404" once: a message built from the status already says it.
        if status is not None and not self.message.startswith(f"HTTP {status}"):
            parts.append(f"HTTP {status}")
        if code is not None and code != status:
            parts.append(f"code {code}")
        if method and self.url:
            parts.append(f"{method} {self.url}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        super().__init__(" | ".join(parts))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"code={self.code!r})"
        )


class AuthenticationError(APIError):
    """401/403, or an RPC error saying permission denied."""


class NotFoundError(APIError):
    """404, or an RPC error saying the thing does not exist."""


class RateLimitError(APIError):
    """429 Too Many Requests. ``retry_after`` is the server's hint in seconds, if it gave one."""


class ConflictError(APIError):
    """409 Conflict: the request clashes with the current state of what it names, or with
    a limit (e.g. Qiskit Runtime refuses a job when the instance's usage limit is reached)."""


class UsageLimitExceeded(ConflictError):
    """The account's or instance's usage quota is used up, so nothing new may run (Qiskit
    Runtime answers a job create with 409 "Usage exceeds instance limit"). Retrying will
    not help until the quota is raised or renewed."""


class ServerError(APIError):
    """5xx: the server failed."""


class ProtocolError(AioComputeError):
    """The answer was not what the API promises: HTML from a proxy, an empty or invalid body,
    a missing field. ``status`` and ``body`` (excerpt) say what came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes | str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.status = status
        self.body = excerpt(body)
        self.method = method
        self.url = redact(url) if url else None
        parts = [self.message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if method and self.url:
            parts.append(f"{method} {self.url}")
        if self.body:
            parts.append(f"body: {self.body!r}")
        super().__init__(" | ".join(parts))


class StreamDecodeError(ProtocolError):
    """A streamed JSON value was malformed or cut off.

    ``offset`` is the byte offset in the stream where the problem was found; ``excerpt`` is a
    short piece of the stream around it; ``truncated`` is True when the stream ended in the
    middle of a value (as opposed to garbage in the stream).
    """

    def __init__(
        self, message: str, *, offset: int, excerpt: str = "", truncated: bool = False
    ) -> None:
        self.offset = offset
        self.excerpt = redact_window(excerpt)
        self.truncated = truncated
        super().__init__(f"{message} at byte {offset}" + (f": {self.excerpt!r}" if excerpt else ""))


class WaitError(AioComputeError):
    """A wait ended without reaching its target.

    ``last`` is the last typed resource seen (or None), ``history`` the list of
    ``(state, monotonic_time)`` transitions, ``attempts`` the number of polls and ``elapsed``
    the seconds spent waiting.
    """

    def __init__(
        self,
        message: str,
        *,
        last: Any = None,
        history: Sequence[tuple[str, float]] = (),
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        self.last = last
        self.history = list(history)
        self.attempts = attempts
        self.elapsed = elapsed
        super().__init__(redact(message))


class WaitTimeout(WaitError):
    """The deadline passed before the target state was reached."""


class UnreachableState(WaitError):
    """A state was reached from which the target can never come (e.g. failed, killed)."""


def naming_the_missing(error: NotFoundError, what: str, id: str) -> NotFoundError:
    """``error`` with a message that names what was not found (``job 'j-1' not found: ...``),
    when the server's own message does not name the id; else ``error`` itself."""
    if id in error.message:
        return error
    return type(error)(
        f"{what} {id!r} not found: {error.message}",
        status=error.status,
        code=error.code,
        body=error.body,
        method=error.method,
        url=error.url,
        retry_after=error.retry_after,
        request_id=error.request_id,
        headers=error.headers,
    )


# Words in an RPC error's message that say which kind of "no" it is.
_NOT_FOUND_WORDS = ("not found", "no such", "does not exist", "unknown session", "unknown job")
_AUTH_WORDS = ("permission denied", "unauthorized", "not authorized", "forbidden", "access denied")


def api_error_for(
    status: int,
    message: str,
    *,
    code: Any = None,
    body: bytes | str | None = None,
    retry_after: float | None = None,
    method: str | None = None,
    url: str | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> APIError:
    """Pick the :class:`APIError` subclass for an HTTP status and/or an API error code.

    ``code`` is the API's own code: Workbench reuses HTTP numbers inside 200 bodies
    (``{"code": 404, "message": "job not found"}``), so a numeric code in the 4xx/5xx range is
    read like a status; otherwise the message's words decide.
    """
    kwargs: dict[str, Any] = {"status": status, "code": code, "body": body, "method": method}
    kwargs["url"] = url
    kwargs["retry_after"] = retry_after
    kwargs["request_id"] = request_id
    kwargs["headers"] = headers
    effective = status
    if status < 400 and isinstance(code, int) and 400 <= code < 600:
        effective = code
    lowered = message.lower()
    if effective == 429:
        return RateLimitError(message, **kwargs)
    if effective in (401, 403) or any(w in lowered for w in _AUTH_WORDS):
        return AuthenticationError(message, **kwargs)
    if effective == 404 or any(w in lowered for w in _NOT_FOUND_WORDS):
        return NotFoundError(message, **kwargs)
    if effective == 409:
        return ConflictError(message, **kwargs)
    if effective >= 500:
        return ServerError(message, **kwargs)
    return APIError(message, **kwargs)
