"""Qiskit Runtime sessions and jobs API, sans I/O: request building and response deciphering.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.

Requests: one builder per endpoint returns a :class:`~aiocompute._core.protocol_kit.Request`
(HTTP method, path under ``/v1``, JSON body, idempotent); arguments are checked first and
bad ones raise :class:`ValueError` / :class:`TypeError` naming the parameter.

Responses: :func:`parse_session` reads a session object, :func:`parse_job`,
:func:`parse_job_list`, :func:`parse_job_created` and :func:`parse_job_metrics` the job
answers; ``PATCH`` and ``DELETE .../close``
answer 204 with no body, so they have nothing to parse. :func:`error_parser` reads the two
error shapes the service uses (``{"errors": [...], "trace"}`` and ``{"error": {...}}``),
IBM Cloud IAM's own shape (``{"errorCode", "errorMessage"}``), and falls back to plain text.
:func:`parse_iam_token` reads the IAM token answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs
from attrs import frozen

from .._core.checks import count
from .._core.protocol_kit import NOT_JSON, Request, path_id, read_json
from .._core.serde import Converters, structure
from .._exceptions import ProtocolError
from .models import Job, JobList, JobMetrics, JobProgram, Session, SessionMode

__all__ = [
    "DEFAULT_MAX_TTL",
    "LOG_LEVELS",
    "MAX_JOBS_PAGE",
    "IAMToken",
    "cancel_job",
    "close_session",
    "converter",
    "create_session",
    "delete_job",
    "error_parser",
    "get_job",
    "get_session",
    "iam_token_form",
    "job_logs",
    "job_metrics",
    "job_results",
    "job_state",
    "list_jobs",
    "parse_iam_token",
    "parse_job",
    "parse_job_created",
    "parse_job_list",
    "parse_job_metrics",
    "parse_session",
    "run_job",
    "session_state",
    "update_job_tags",
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
        body["max_ttl"] = count(max_ttl, "max_ttl", minimum=1)  # whole seconds
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


# --------------------------------------------------------------------------- jobs

#: The ``log_level`` values a job accepts.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: The most jobs one ``GET /v1/jobs`` page holds (also the service's default page size).
MAX_JOBS_PAGE = 200


def _tags(tags: Any, what: str = "tags") -> list[str]:
    # A bare string is a sequence too: tags="x" would send the tags "x" one letter each.
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
        raise TypeError(f"{what} must be a list of strings, got {type(tags).__name__}")
    checked: list[str] = []
    for i, tag in enumerate(tags):
        checked.append(_text(tag, f"{what}[{i}]"))
    return checked


def run_job(
    program_id: str,
    backend: str,
    *,
    params: Mapping[str, Any],
    session_id: str | None = None,
    tags: Sequence[str] = (),
    private: bool = False,
    log_level: str | None = None,
    max_execution_time: int | None = None,
    calibration_id: str | None = None,
    runtime: str | None = None,
) -> Request:
    """``POST /v1/jobs``: run a primitive (``program_id`` ``"sampler"`` or ``"estimator"``)
    on ``backend`` with ``params`` (the primitive's input, plain JSON).

    ``session_id`` runs it in a session (or batch); ``tags`` label it (``list_jobs`` finds
    jobs by tag); ``private`` keeps its params out of later reads and lets its results be
    read once; ``log_level`` is one of :data:`LOG_LEVELS`; ``max_execution_time`` (seconds of
    quantum time) is sent as ``cost``; ``calibration_id`` and ``runtime`` (an image) are
    sent when given. Not idempotent: a repeated run is a second job.
    """
    body: dict[str, Any] = {
        "program_id": _text(program_id, "program_id"),
        "backend": _text(backend, "backend"),
    }
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping (a JSON object), got {type(params).__name__}")
    body["params"] = dict(params)
    if session_id is not None:
        body["session_id"] = _text(session_id, "session_id")
    checked_tags = _tags(tags)
    if checked_tags:
        body["tags"] = checked_tags
    if not isinstance(private, bool):
        raise TypeError(f"private must be True or False, got {private!r}")
    if private:
        body["private"] = True
    if log_level is not None:
        if not isinstance(log_level, str) or log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        body["log_level"] = log_level.lower()
    if max_execution_time is not None:
        body["cost"] = count(max_execution_time, "max_execution_time", minimum=1)
    if calibration_id is not None:
        body["calibration_id"] = _text(calibration_id, "calibration_id")
    if runtime is not None:
        body["runtime"] = _text(runtime, "runtime")
    return Request("POST", "/v1/jobs", body=body, idempotent=False)


def _job_path(job_id: str, tail: str = "") -> str:
    return f"/v1/jobs/{path_id(job_id, 'job_id')}{tail}"


def get_job(job_id: str, *, include_params: bool = False) -> Request:
    """``GET /v1/jobs/{id}``; the params are left out unless ``include_params``."""
    if not isinstance(include_params, bool):
        raise TypeError(f"include_params must be True or False, got {include_params!r}")
    return Request(
        "GET",
        _job_path(job_id),
        params={"exclude_params": not include_params},
        idempotent=True,
    )


def _when(value: datetime | str | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        # A naive datetime is taken as UTC (the service filters in UTC).
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return _text(value, what)
    raise TypeError(f"{what} must be a datetime or an ISO-8601 string, got {type(value).__name__}")


def list_jobs(
    *,
    limit: int | None = None,
    offset: int | None = None,
    pending: bool | None = None,
    program: str | None = None,
    backend: str | None = None,
    session_id: str | None = None,
    tags: Sequence[str] = (),
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
    descending: bool = True,
    include_params: bool = False,
) -> Request:
    """``GET /v1/jobs``: one page of jobs, newest first unless ``descending=False``.

    ``limit`` is the page size (1..:data:`MAX_JOBS_PAGE`, the service's default 200),
    ``offset`` how many matching jobs to skip. Filters: ``pending`` (True: queued or
    running; False: ended), ``program``, ``backend``, ``session_id``, ``tags`` (a job must
    carry every one), ``created_after`` / ``created_before`` (datetimes, naive ones taken
    as UTC, or ISO-8601 strings).
    """
    query: dict[str, Any] = {}
    if limit is not None:
        query["limit"] = count(limit, "limit", minimum=1, maximum=MAX_JOBS_PAGE)
    if offset is not None:
        query["offset"] = count(offset, "offset")
    for name, flag in (("pending", pending), ("descending", descending)):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if not isinstance(include_params, bool):
        raise TypeError(f"include_params must be True or False, got {include_params!r}")
    query["pending"] = pending
    if program is not None:
        query["program"] = _text(program, "program")
    if backend is not None:
        query["backend"] = _text(backend, "backend")
    if session_id is not None:
        query["session_id"] = _text(session_id, "session_id")
    checked_tags = _tags(tags)
    if checked_tags:
        query["tags"] = checked_tags
    query["created_after"] = _when(created_after, "created_after")
    query["created_before"] = _when(created_before, "created_before")
    if not descending:
        query["sort"] = "ASC"
    query["exclude_params"] = not include_params
    return Request("GET", "/v1/jobs", params=query, idempotent=True)


def cancel_job(job_id: str) -> Request:
    """``POST /v1/jobs/{id}/cancel`` (answers 204). Not retried once sent, like every stop."""
    return Request("POST", _job_path(job_id, "/cancel"), idempotent=False)


def delete_job(job_id: str) -> Request:
    """``DELETE /v1/jobs/{id}`` (answers 204). Not retried once sent, like every delete."""
    return Request("DELETE", _job_path(job_id), idempotent=False)


def job_results(job_id: str) -> Request:
    """``GET /v1/jobs/{id}/results``: the primitive's result, JSON text that can run to
    many megabytes, so it is read as a stream."""
    return Request("GET", _job_path(job_id, "/results"), idempotent=True, stream=True)


def job_logs(job_id: str) -> Request:
    """``GET /v1/jobs/{id}/logs``: plain text."""
    return Request("GET", _job_path(job_id, "/logs"), idempotent=True)


def job_metrics(job_id: str) -> Request:
    """``GET /v1/jobs/{id}/metrics``."""
    return Request("GET", _job_path(job_id, "/metrics"), idempotent=True)


def update_job_tags(job_id: str, tags: Sequence[str]) -> Request:
    """``PUT /v1/jobs/{id}/tags`` with ``{"tags": [...]}`` (answers 204); replaces the tags.
    Idempotent: setting the same tags twice changes nothing."""
    return Request("PUT", _job_path(job_id, "/tags"), body={"tags": _tags(tags)}, idempotent=True)


def parse_job(data: Any, *, strict: bool = False) -> Job:
    """A job object (plain data, or the raw body as bytes/str) -> :class:`Job`."""
    if isinstance(data, (bytes, str)):
        data = _json(data, "job")
    job: Job = structure(converter(strict), data, Job, what="job")
    return job


def parse_job_created(
    data: Any,
    *,
    program_id: str,
    tags: Sequence[str] = (),
    session_id: str | None = None,
    private: bool = False,
    strict: bool = False,
) -> Job:
    """The answer of ``POST /v1/jobs`` (``{"id", "backend", "session_id"?, "private"?}``)
    -> :class:`Job`, completed with what was sent: the program, the tags, the session and
    ``private`` (when the answer leaves them out)."""
    if isinstance(data, (bytes, str)):
        data = _json(data, "created job")
    job = parse_job(data, strict=strict)
    program = job.program or JobProgram(program_id)
    return attrs.evolve(
        job,
        program=program,
        tags=job.tags or tuple(tags),
        session_id=job.session_id if job.session_id is not None else session_id,
        private=job.private if job.private is not None else private,
    )


def parse_job_list(data: Any, *, strict: bool = False) -> JobList:
    """A ``GET /v1/jobs`` page -> :class:`JobList`."""
    if isinstance(data, (bytes, str)):
        data = _json(data, "job list")
    if isinstance(data, Mapping) and not isinstance(data.get("jobs", []), list):
        raise ProtocolError(f"job list: 'jobs' must be an array, got {type(data['jobs']).__name__}")
    page: JobList = structure(converter(strict), data, JobList, what="job list")
    return page


def parse_job_metrics(data: Any, *, strict: bool = False) -> JobMetrics:
    """A ``GET /v1/jobs/{id}/metrics`` answer -> :class:`JobMetrics`."""
    if isinstance(data, (bytes, str)):
        data = _json(data, "job metrics")
    metrics: JobMetrics = structure(converter(strict), data, JobMetrics, what="job metrics")
    return metrics


def job_state(job: Job) -> str:
    """The state a wait decides on: :attr:`Job.status_name` (the server's spelling; the
    state table compares it in lower case)."""
    return job.status_name


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
