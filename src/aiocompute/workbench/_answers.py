"""Posit Workbench API, sans I/O: the converters and response deciphering.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.
Re-exported by :mod:`aiocompute.workbench._protocol`, which builds the requests.

:func:`decode_envelope` turns ``(status, body)`` into the ``result`` value, in the order the
API asks for: HTTP status, then an ``{"error": {...}}`` object (which Workbench sends with
HTTP 200), then ``result``. The ``parse_*`` functions turn that value into models.
:func:`parse_stream_object` reads one object of a job-output stream. :func:`session_state`
and :func:`job_state` read a model's raw state; :func:`error_parser` and
:func:`transient_error_in_body` are for the transport.

Where the reference and real servers disagree, both forms are accepted (see API-NOTES.md):
``launch_job`` answers with one or two ``result`` levels; ``version`` is unwrapped;
audited details come as ``audited_details`` or ``audit_details``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Literal

from attrs import frozen

from .._core.protocol_kit import NOT_JSON, read_json
from .._core.serde import Converters, structure
from .._exceptions import APIError, ProtocolError, api_error_for
from .models import (
    AuditedJob,
    AuditedJobDetails,
    ComputeEnv,
    ComputeEnvironments,
    Job,
    JobConfig,
    JobSpec,
    JobStatus,
    LaunchedSession,
    OutputChunk,
    ResourceLimit,
    ServerVersion,
    Session,
    SessionListing,
    SessionState,
    User,
)

__all__ = [
    "converter",
    "decode_envelope",
    "error_parser",
    "job_state",
    "parse_audited_job_details",
    "parse_audited_job_launch",
    "parse_compute_envs",
    "parse_job_launch",
    "parse_launched_session",
    "parse_output_chunk",
    "parse_response",
    "parse_session_listing",
    "parse_stream_object",
    "parse_users",
    "parse_version",
    "session_state",
    "transient_error_in_body",
]

# --------------------------------------------------------------------------- converters

# Sessions and most types are snake_case on the wire; these are camelCase.
_CLASS_NAMING: dict[type, Literal["snake", "camel"]] = {
    Job: "camel",  # AuditedJob inherits it
    JobSpec: "camel",
    User: "camel",
    ComputeEnv: "camel",
    JobConfig: "camel",
    OutputChunk: "camel",
}
# The preview reference spells this one field camelCase inside a snake_case type.
_RENAMES: dict[type, dict[str, str]] = {ResourceLimit: {"value_type": "valueType"}}
# Other spellings accepted on read: the docs' parameter tables use snake_case for job fields
# that the job objects themselves spell camelCase.
_ALIASES: dict[type, dict[str, tuple[str, ...]]] = {
    ResourceLimit: {
        "max_value": ("maxValue",),
        "default_value": ("defaultValue",),
        "value_type": ("value_type",),
    },
    Job: {"working_directory": ("working_directory",)},
    JobSpec: {
        "working_directory": ("working_directory",),
        "resource_limits": ("resource_limits",),
        "placement_constraints": ("placement_constraints",),
        "container_image": ("container_image",),
    },
}


#: The Workbench converters: ``converter()`` is the lenient one, ``converter(strict=True)``
#: the strict one (unknown keys and wrong JSON types raise).
converter = Converters(
    naming="snake",
    class_naming=_CLASS_NAMING,
    renames=_RENAMES,
    aliases=_ALIASES,
)


# --------------------------------------------------------------------------- responses

_STOP_METHODS = frozenset({"stop_session", "stop_job", "stop_audited_job"})


def _error_fields(error: Any) -> tuple[Any, str]:
    """``{"code", "message"}`` (or a bare string) -> (code, message)."""
    if isinstance(error, Mapping):
        code = error.get("code")
        if isinstance(code, str) and code.strip().isdigit():
            code = int(code)
        message = error.get("message")
        if not isinstance(message, str) or not message:
            message = json.dumps(dict(error), default=str)[:200]
        return code, message
    return None, str(error)


def _rpc_error(error: Any, *, status: int, body: bytes | str | None, method: str) -> APIError:
    code, message = _error_fields(error)
    return api_error_for(status, message, code=code, body=body, method=method)


def error_parser(
    status: int, body: bytes | str | None, headers: Any = None
) -> tuple[Any, str] | None:
    """For the transport: ``(code, message)`` if ``body`` is a Workbench error object.

    Returns None when the body is not JSON of the shape ``{"error": {...}}`` (e.g. HTML
    from a proxy). ``status`` and ``headers`` are accepted for the transport's signature.
    """
    del status, headers  # the shape alone decides
    if not body:
        return None
    obj, problem = read_json(body)
    if problem is not None:  # not JSON, or nested too deeply: not an error object
        return None
    if not isinstance(obj, Mapping) or obj.get("error") in (None, "", {}):
        return None
    return _error_fields(obj["error"])


def _looks_like_html(text: str) -> bool:
    return text.lstrip().startswith("<")


def decode_envelope(method: str, status: int, body: bytes | str | None) -> Any:
    """The ``result`` of a Workbench answer, or the matching error.

    Checks, in order: the HTTP status (non-2xx -> :class:`~aiocompute.APIError` subclass),
    an ``{"error": {"code", "message"}}`` object in the body (-> ``api_error_for``: code 401
    -> AuthenticationError, 404 / "not found" -> NotFoundError...), then ``result``.
    ``version`` answers unwrapped (returned whole); ``stop_*`` may answer an empty body
    (-> None). A body that is not JSON raises :class:`~aiocompute.ProtocolError`.
    """
    if not 200 <= status < 300:
        parsed = error_parser(status, body)
        if parsed is not None:
            code, message = parsed
            raise api_error_for(status, message, code=code, body=body, method=method)
        raise api_error_for(status, f"{method} failed with HTTP {status}", body=body, method=method)

    text: str | None
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # Raised below, outside the except: the decode error holds the whole body, and
            # must not be chained to ours as __context__ (`from None` only hides it).
            text = None
    else:
        text = body or ""
    if text is None:
        raise ProtocolError(f"{method}: response body is not UTF-8", status=status, body=body)
    if not text or text.isspace():  # what `not text.strip()` says, without a copy
        if method in _STOP_METHODS:
            return None
        raise ProtocolError(f"{method}: empty response body", status=status)
    obj, problem = read_json(text)  # never raises: nothing is chained to our error
    if problem is not None:
        if problem == NOT_JSON and _looks_like_html(text):
            problem = "HTML (a proxy or login page?)"
        raise ProtocolError(
            f"{method}: expected a JSON body, got {problem}", status=status, body=text
        )
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise ProtocolError(
            f"{method}: expected a JSON object, got {type(obj).__name__}", status=status, body=text
        )
    error = obj.get("error")
    if error is not None and error not in ("", {}):  # None first: the usual case
        raise _rpc_error(error, status=status, body=text, method=method)
    if method in _STOP_METHODS:
        return None
    if "result" in obj:
        return obj["result"]
    if method == "version":
        return obj
    raise ProtocolError(f"{method}: no 'result' in the response", status=status, body=text)


def _expect_object(value: Any, what: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        kind = "null" if value is None else type(value).__name__
        raise ProtocolError(f"could not read {what}: {path}: expected an object, got {kind}")
    return value


def _check_keys(obj: Mapping[str, Any], allowed: Iterable[str], what: str, path: str) -> None:
    """Strict mode for envelope levels the converter does not see."""
    extra = set(obj) - set(allowed)
    if extra:
        keys = ", ".join(repr(k) for k in sorted(extra))
        raise ProtocolError(f"could not read {what}: {path}: unknown key(s) {keys}")


@frozen
class _VersionInfo:
    # The reference calls these "string properties"; numbers are accepted too.
    major: int | str | None = None
    minor: int | str | None = None
    patch: int | str | None = None
    build_number: int | str | None = None
    release_name: str | None = None
    build_type: str | None = None


@frozen
class _VersionAnswer:
    version: _VersionInfo
    features: tuple[str, ...] = ()


def _as_int(value: int | str | None) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_version(result: Any, *, strict: bool = False) -> ServerVersion:
    """``version`` -> :class:`ServerVersion` (from ``{"version": {...}, "features": [...]}``).

    A ``{"result": ...}`` wrapper is accepted too.
    """
    what = "version result"
    obj = _expect_object(result, what, "$")
    if "version" not in obj and isinstance(obj.get("result"), Mapping):
        obj = obj["result"]
    answer: _VersionAnswer = structure(converter(strict), obj, _VersionAnswer, what=what)
    info = answer.version
    build = info.build_number
    return ServerVersion(
        major=_as_int(info.major),
        minor=_as_int(info.minor),
        patch=_as_int(info.patch),
        build_number=None if build is None else str(build),
        release_name=info.release_name,
        build_type=info.build_type,
        features=answer.features,
        raw=obj,
    )


def parse_users(result: Any, *, strict: bool = False) -> list[User]:
    """``get_users`` -> list of :class:`User`."""
    users: list[User] = structure(
        converter(strict), result, list[User], what="get_users result", path="$.result"
    )
    return users


def parse_compute_envs(result: Any, *, strict: bool = False) -> ComputeEnvironments:
    """``get_compute_envs`` -> :class:`ComputeEnvironments`."""
    envs: ComputeEnvironments = structure(
        converter(strict),
        result,
        ComputeEnvironments,
        what="get_compute_envs result",
        path="$.result",
    )
    return envs


def parse_launched_session(result: Any, *, strict: bool = False) -> LaunchedSession:
    """``launch_session`` / ``resume_session`` -> :class:`LaunchedSession`."""
    launched: LaunchedSession = structure(
        converter(strict), result, LaunchedSession, what="session launch result", path="$.result"
    )
    return launched


def parse_session_listing(result: Any, *, strict: bool = False) -> SessionListing:
    """``get_session`` / ``get_historical_session`` -> :class:`SessionListing`."""
    listing: SessionListing = structure(
        converter(strict), result, SessionListing, what="session listing", path="$.result"
    )
    return listing


def _launched_job(
    result: Any, keys: tuple[str, ...], cls: type[Job], what: str, strict: bool
) -> Any:
    """Find the job object in ``{"result": {"job": ...}}`` or ``{"job": ...}`` and read it."""
    obj = _expect_object(result, what, "$.result")
    path = "$.result"
    if "result" in obj and not any(k in obj for k in keys):
        obj = _expect_object(obj["result"], what, "$.result.result")
        path = "$.result.result"
    for key in keys:
        if key in obj:
            if strict:
                _check_keys(obj, (key,), what, path)
            return structure(converter(strict), obj[key], cls, what=what, path=f"{path}.{key}")
    names = " or ".join(repr(k) for k in keys)
    raise ProtocolError(f"could not read {what}: {path}: no {names} object")


def parse_job_launch(result: Any, *, strict: bool = False) -> Job:
    """``launch_job`` -> :class:`Job`; one or two ``result`` levels are accepted."""
    job: Job = _launched_job(result, ("job",), Job, "launch_job result", strict)
    return job


def parse_audited_job_launch(result: Any, *, strict: bool = False) -> AuditedJob:
    """``launch_audited_job`` -> :class:`AuditedJob` (key ``audited_job``, or ``job``)."""
    job: AuditedJob = _launched_job(
        result, ("audited_job", "job"), AuditedJob, "launch_audited_job result", strict
    )
    return job


def parse_audited_job_details(result: Any, *, strict: bool = False) -> AuditedJobDetails:
    """``get_audited_job_details`` -> :class:`AuditedJobDetails`.

    The example says ``audited_details``, the prose ``audit_details``: both are read.
    """
    what = "get_audited_job_details result"
    obj = _expect_object(result, what, "$.result")
    for key in ("audited_details", "audit_details"):
        if key in obj:
            if strict:
                _check_keys(obj, (key,), what, "$.result")
            details: AuditedJobDetails = structure(
                converter(strict), obj[key], AuditedJobDetails, what=what, path=f"$.result.{key}"
            )
            return details
    if "script_output" in obj or "environment" in obj:  # not wrapped at all
        details = structure(converter(strict), obj, AuditedJobDetails, what=what, path="$.result")
        return details
    raise ProtocolError(f"could not read {what}: $.result: no 'audited_details' object")


def parse_output_chunk(
    obj: Any, *, audited: bool, strict: bool = False, path: str = "$"
) -> OutputChunk:
    """One output object ``{"jobId", "outputType", "output"[, "outputSource"]}``."""
    what = "audited job output chunk" if audited else "job output chunk"
    chunk: OutputChunk = structure(converter(strict), obj, OutputChunk, what=what, path=path)
    return chunk


def parse_stream_object(
    obj: Any, *, audited: bool = False, strict: bool = False, method: str | None = None
) -> OutputChunk:
    """One object of a ``get_job_output`` / ``get_audited_job_output`` stream.

    An ``{"error": ...}`` object (an error mid-stream) raises the matching
    :class:`~aiocompute.APIError`; a finished audited job's single
    ``{"result": {"audited_job_output": {...}}}`` gives its one chunk.
    """
    rpc = method or ("get_audited_job_output" if audited else "get_job_output")
    what = "audited job output" if audited else "job output"
    if not isinstance(obj, Mapping):
        kind = "null" if obj is None else type(obj).__name__
        raise ProtocolError(f"could not read {what}: $: expected an object, got {kind}")
    error = obj.get("error")
    if error not in (None, "", {}):
        body = json.dumps(obj, default=str)
        raise _rpc_error(error, status=200, body=body, method=rpc)
    if "result" in obj:
        result = _expect_object(obj["result"], what, "$.result")
        if "audited_job_output" not in result:
            raise ProtocolError(f"could not read {what}: $.result: no 'audited_job_output'")
        if strict:
            _check_keys(obj, ("result",), what, "$")
            _check_keys(result, ("audited_job_output",), what, "$.result")
        return parse_output_chunk(
            result["audited_job_output"],
            audited=True,
            strict=strict,
            path="$.result.audited_job_output",
        )
    return parse_output_chunk(obj, audited=audited, strict=strict)


def _parse_none(result: Any, *, strict: bool = False) -> None:
    del result, strict


_PARSERS: dict[str, Callable[..., Any]] = {
    "version": parse_version,
    "get_users": parse_users,
    "get_compute_envs": parse_compute_envs,
    "launch_session": parse_launched_session,
    "resume_session": parse_launched_session,
    "get_session": parse_session_listing,
    "get_historical_session": parse_session_listing,
    "launch_job": parse_job_launch,
    "launch_audited_job": parse_audited_job_launch,
    "get_audited_job_details": parse_audited_job_details,
    "stop_session": _parse_none,
    "stop_job": _parse_none,
    "stop_audited_job": _parse_none,
    "get_audited_job_output": partial(parse_stream_object, audited=True),
}


def parse_response(
    method: str, status: int, body: bytes | str | None, *, strict: bool = False
) -> Any:
    """:func:`decode_envelope` then the method's ``parse_*`` function.

    ``get_job_output`` (always a stream) is not handled here: feed its objects to
    :func:`parse_stream_object`. ``get_audited_job_output`` is, for a finished job's single
    answer.
    """
    parser = _PARSERS.get(method)
    if parser is None:
        raise ValueError(f"no one-shot parser for {method!r}; streams use parse_stream_object")
    result = decode_envelope(method, status, body)
    if method == "get_audited_job_output":
        # A finished job's answer is {"result": {"audited_job_output": {...}}}.
        return parser({"result": result}, strict=strict)
    return parser(result, strict=strict)


# --------------------------------------------------------------------------- states


def session_state(s: Session) -> str:
    """A session's raw state string.

    ``activity_state`` when present. Sessions from ``get_historical_session`` carry none:
    they have ended, so ``"ended"``. Otherwise ``"unknown"``.
    """
    state = s.activity_state
    if isinstance(state, SessionState):
        return state.value
    if state:
        return state
    if s.job is not None:
        return "ended"
    return "unknown"


def job_state(j: Job) -> str:
    """A job's raw status string (``"Finished"``...), ``"unknown"`` if none was sent."""
    status = j.status
    if isinstance(status, JobStatus):
        return status.value
    return status or "unknown"


def transient_error_in_body(
    status: int, body: bytes | str | None, headers: Any = None
) -> tuple[Any, str] | None:
    """For the transport: ``(code, message)`` of an RPC error inside a 2xx body whose code
    is 429 or 5xx, else None.

    Workbench reports overload inside a 200 body (``{"error": {"code": 503, ...}}``); given
    to the transport, such an answer is retried and paces the rate governor like the HTTP
    status it stands for. Other RPC errors are left to :func:`decode_envelope`.
    """
    if not body:
        return None
    marker: Any = b'"error"' if isinstance(body, bytes) else '"error"'
    if marker not in body:
        return None  # the usual answer, found without parsing
    parsed = error_parser(status, body, headers)
    if parsed is None:
        return None
    code = parsed[0]
    if isinstance(code, int) and not isinstance(code, bool) and (code == 429 or code >= 500):
        return parsed
    return None
