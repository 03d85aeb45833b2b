"""Qiskit Runtime sessions API, sans I/O: request building and response deciphering.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.

Requests: one builder per endpoint returns a :class:`~aiocompute._core.protocol_kit.Request`
(HTTP method, path under ``/v1``, JSON body, idempotent); arguments are checked first and
bad ones raise :class:`ValueError` / :class:`TypeError` naming the parameter.

Responses: :func:`parse_session` reads a session object; ``PATCH`` and ``DELETE .../close``
answer 204 with no body, so they have nothing to parse. :func:`error_parser` reads the two
error shapes the service uses (``{"errors": [...], "trace"}`` and ``{"error": {...}}``),
IBM Cloud IAM's own shape (``{"errorCode", "errorMessage"}``), and falls back to plain text.
:func:`parse_iam_token` reads the IAM token answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from .._core.protocol_kit import NOT_JSON, Request, path_id, read_json
from .._core.serde import Converters, structure
from .._exceptions import ProtocolError
from .models import Session, SessionMode

__all__ = [
    "DEFAULT_MAX_TTL",
    "IAMToken",
    "close_session",
    "converter",
    "create_session",
    "error_parser",
    "get_session",
    "iam_token_form",
    "parse_iam_token",
    "parse_session",
    "session_state",
    "update_session",
]

#: ``max_ttl`` the service gives a new session when none is sent (8 hours).
DEFAULT_MAX_TTL = 28800

# --------------------------------------------------------------------------- converters


#: The Qiskit converters: ``converter()`` is the lenient one, ``converter(strict=True)``
#: the strict one (unknown keys and wrong JSON types raise).
converter = Converters(naming="snake")


# --------------------------------------------------------------------------- requests


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is required and must not be empty")
    return value


def create_session(
    backend: str,
    *,
    mode: SessionMode | str = SessionMode.BATCH,
    max_ttl: int | None = None,
    instance: str | None = None,
) -> Request:
    """``POST /v1/sessions``: open a session on ``backend``.

    ``mode`` is ``"batch"`` or ``"dedicated"``; ``max_ttl`` the most seconds the session
    may live (subject to plan limits), sent only when given (the service then applies its
    default, :data:`DEFAULT_MAX_TTL`, as IBM's own client leaves it); ``instance`` (a CRN)
    is sent only when given (the client gives its own, as IBM's client does). Not
    idempotent: a repeated create opens a second session.
    """
    body: dict[str, Any] = {}
    if isinstance(mode, SessionMode):
        body["mode"] = mode.value
    elif isinstance(mode, str) and mode in {m.value for m in SessionMode}:
        body["mode"] = mode
    else:
        raise ValueError(f"mode must be 'batch' or 'dedicated', got {mode!r}")
    body["backend"] = _text(backend, "backend")
    if max_ttl is not None:
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int):
            raise TypeError(f"max_ttl must be an int (seconds), got {type(max_ttl).__name__}")
        if max_ttl <= 0:
            raise ValueError(f"max_ttl must be a positive number of seconds, got {max_ttl}")
        body["max_ttl"] = max_ttl
    if instance is not None:
        body["instance"] = _text(instance, "instance")
    return Request("POST", "/v1/sessions", body=body, idempotent=False)


def get_session(session_id: str) -> Request:
    """``GET /v1/sessions/{id}``."""
    sid = path_id(session_id, "session_id")
    return Request("GET", f"/v1/sessions/{sid}", idempotent=True)


def update_session(session_id: str, *, accepting_jobs: bool) -> Request:
    """``PATCH /v1/sessions/{id}`` with ``{"accepting_jobs": ...}`` (answers 204).

    ``False`` lets queued jobs run and then closes the session. Idempotent: setting the
    flag twice has the effect of setting it once, so it is retried like a read.
    """
    if not isinstance(accepting_jobs, bool):
        raise TypeError(f"accepting_jobs must be True or False, got {accepting_jobs!r}")
    sid = path_id(session_id, "session_id")
    return Request(
        "PATCH",
        f"/v1/sessions/{sid}",
        body={"accepting_jobs": accepting_jobs},
        idempotent=True,
    )


def close_session(session_id: str) -> Request:
    """``DELETE /v1/sessions/{id}/close`` (answers 204): no more queued jobs run.

    Not retried once sent, like every close (the house rule for destructive calls).
    """
    sid = path_id(session_id, "session_id")
    return Request("DELETE", f"/v1/sessions/{sid}/close", idempotent=False)


# --------------------------------------------------------------------------- responses


def _json(body: bytes | str, what: str, status: int | None = None) -> Any:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text.strip():
        raise ProtocolError(f"{what}: expected a JSON body, got an empty one", status=status)
    data, problem = read_json(text)
    if problem is None:
        return data
    if problem == NOT_JSON and text.lstrip().startswith("<"):
        problem = "HTML (a proxy or login page?)"
    raise ProtocolError(f"{what}: expected a JSON body, got {problem}", status=status, body=text)


def parse_session(data: Any, *, strict: bool = False) -> Session:
    """A session object (plain data, or the raw body as bytes/str) -> :class:`Session`."""
    if isinstance(data, (bytes, str)):
        data = _json(data, "session")
    session: Session = structure(converter(strict), data, Session, what="session")
    return session


def session_state(session: Session) -> str:
    """The state a wait decides on: :attr:`Session.effective_state`."""
    return session.effective_state


def _errors_entry(entry: Any) -> tuple[Any, str] | None:
    if not isinstance(entry, Mapping):
        return (None, entry) if isinstance(entry, str) and entry else None
    message = entry.get("message")
    if not isinstance(message, str) or not message:
        return None
    more = entry.get("more_info")
    if isinstance(more, str) and more:
        message = f"{message} (more info: {more})"
    return entry.get("code"), message


def error_parser(
    status: int, body: bytes | str | None, headers: Any = None
) -> tuple[Any, str] | None:
    """For the transport: ``(code, message)`` from a Qiskit (or IAM) error body.

    Shapes, in order: ``{"errors": [{"code", "message", "more_info"}], "trace"}`` (every
    message is kept, joined by ``"; "``, the first code wins); ``{"error": {"code",
    "message"}}`` (or ``{"error": "text"}``); IAM's ``{"errorCode", "errorMessage"}``;
    ``{"message": ...}``. A body that is none of these but plain text gives that text; an
    HTML page or an empty body gives None (the transport then reports the status itself).
    A 503 says the service is likely under maintenance, as IBM's own client reads it.
    """
    del headers
    text = ""
    if body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    parsed = _error_fields(text)
    if status == 503:
        base = parsed[1] if parsed is not None else "service unavailable"
        code = parsed[0] if parsed is not None else None
        return code, f"IBM Quantum is unavailable, likely under maintenance: {base}"
    return parsed


def _error_fields(text: str) -> tuple[Any, str] | None:
    stripped = text.strip()
    if not stripped:
        return None
    obj, problem = read_json(stripped)
    if problem is not None:
        if problem != NOT_JSON or stripped.startswith("<"):
            # HTML, or JSON nested too deeply: the transport shows the status and an excerpt.
            return None
        return None, " ".join(stripped.split())[:500]
    if isinstance(obj, Mapping):
        errors = obj.get("errors")
        if isinstance(errors, list):
            entries = [e for e in (_errors_entry(x) for x in errors) if e is not None]
            if entries:
                return entries[0][0], "; ".join(m for _, m in entries)
        error = obj.get("error")
        if isinstance(error, Mapping):
            message = error.get("message")
            if isinstance(message, str) and message:
                return error.get("code"), message
        elif isinstance(error, str) and error:
            description = obj.get("error_description") or obj.get("message")
            if isinstance(description, str) and description:
                return error, description
            return None, error
        iam_message = obj.get("errorMessage")
        if isinstance(iam_message, str) and iam_message:
            return obj.get("errorCode"), iam_message
        message = obj.get("message")
        if isinstance(message, str) and message:
            return obj.get("code"), message
    # JSON of another shape: let the transport show an excerpt.
    return None


# --------------------------------------------------------------------------- IAM

#: The grant type IBM Cloud IAM exchanges an API key with.
IAM_GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"


def iam_token_form(api_key: str) -> dict[str, str]:
    """The form body of ``POST <iam>/identity/token`` for an API key (with
    ``response_type=cloud_iam``, as IBM's own client asks)."""
    return {
        "grant_type": IAM_GRANT_TYPE,
        "apikey": _text(api_key, "api key"),
        "response_type": "cloud_iam",
    }


@frozen(repr=False)
class IAMToken:
    """An IAM access token and its lifetime in seconds (``expires_in``)."""

    access_token: str
    expires_in: float

    def __repr__(self) -> str:
        return f"IAMToken(<redacted>, expires_in={self.expires_in:g})"


def parse_iam_token(data: Any, *, now: float | None = None) -> IAMToken:
    """IAM's answer -> :class:`IAMToken`.

    ``expires_in`` (seconds) is read; if it is missing, ``expiration`` (epoch seconds) is
    used with ``now`` (``time.time()``-style). The token itself never appears in an error.
    """
    if not isinstance(data, Mapping):
        raise ProtocolError("IAM token answer: expected a JSON object")
    token = data.get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise ProtocolError("IAM token answer: no 'access_token'")
    kind = data.get("token_type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() != "bearer"):
        raise ProtocolError(f"IAM token answer: unsupported token_type {kind!r}")
    lifetime = data.get("expires_in")
    if lifetime is None and now is not None:
        expiration = data.get("expiration")
        if isinstance(expiration, (int, float)) and not isinstance(expiration, bool):
            lifetime = expiration - now
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, (int, float))
        or not math.isfinite(lifetime)
        or lifetime <= 0
    ):
        raise ProtocolError(
            f"IAM token answer: 'expires_in' must be a positive number of seconds, got {lifetime!r}"
        )
    return IAMToken(token.strip(), float(lifetime))
