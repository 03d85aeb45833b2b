"""Posit Workbench API, sans I/O: request building and response deciphering.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.

Requests: one builder per RPC method returns a :class:`~aiocompute._core.protocol_kit.Request`
(``POST /api/<method>`` with ``{"method", "kwparams"}``, or a GET for a call without
parameters; the RPC's name as its ``operation``; idempotent or not); arguments are checked
first and bad ones raise :class:`ValueError` / :class:`TypeError` naming the parameter.
:func:`kwparams_of` and :func:`rpc_method` read a request back.

Responses: :func:`decode_envelope` turns ``(status, body)`` into the ``result`` value, in
the order the API asks for: HTTP status, then an ``{"error": {...}}`` object (which Workbench
sends with HTTP 200), then ``result``. The ``parse_*`` functions turn that value into
models. :func:`parse_stream_object` reads one object of a job-output stream. The converters
and response deciphering live in :mod:`aiocompute.workbench._answers` and are re-exported
here.

Where the reference and real servers disagree, both forms are accepted (see API-NOTES.md):
``launch_job`` answers with one or two ``result`` levels; ``version`` is unwrapped;
``stop_session`` is sent both ``suspend_session`` and ``suspend``; audited details come as
``audited_details`` or ``audit_details``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from .._core.protocol_kit import Request
from .._core.serde import format_timestamp, parse_timestamp
from ._answers import (
    converter,
    decode_envelope,
    error_parser,
    job_state,
    parse_audited_job_details,
    parse_audited_job_launch,
    parse_compute_envs,
    parse_job_launch,
    parse_launched_session,
    parse_output_chunk,
    parse_response,
    parse_session_listing,
    parse_stream_object,
    parse_users,
    parse_version,
    session_state,
    transient_error_in_body,
)
from .models import (
    Container,
    EnvironmentVariable,
    JobSpec,
    LaunchParameters,
    SessionHook,
)

__all__ = [
    "METHODS",
    "converter",
    "decode_envelope",
    "error_parser",
    "get_audited_job_details",
    "get_audited_job_output",
    "get_compute_envs",
    "get_historical_session",
    "get_job_output",
    "get_session",
    "get_users",
    "job_state",
    "kwparams_of",
    "launch_audited_job",
    "launch_job",
    "launch_session",
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
    "resume_session",
    "rpc_method",
    "session_state",
    "stop_audited_job",
    "stop_job",
    "stop_session",
    "transient_error_in_body",
    "version",
]

# Requests are written with the lenient converter.
_LENIENT = converter.lenient


# --------------------------------------------------------------------------- requests


def _rpc_request(
    method: str,
    kwparams: Mapping[str, Any] | None = None,
    *,
    idempotent: bool,
    get: bool = False,
    stream: bool = False,
) -> Request:
    """The request of RPC ``method``: ``/api/<method>``, by POST with the body
    ``{"method": ..., "kwparams": {...}}``, or by GET (only for calls without parameters)
    with no body. The RPC's name is the request's ``operation``."""
    if get and kwparams:
        raise ValueError(f"{method}: a call with parameters is sent by POST")
    return Request(
        "GET" if get else "POST",
        f"/api/{method}",
        body=None if get else {"method": method, "kwparams": dict(kwparams or {})},
        idempotent=idempotent,
        operation=method,
        stream=stream,
    )


def rpc_method(request: Request) -> str:
    """The name of the RPC a request calls (its ``operation``)."""
    if request.operation is None:
        raise ValueError(f"not a Workbench RPC: {request.method} {request.path}")
    return request.operation


def kwparams_of(request: Request) -> Mapping[str, Any]:
    """The RPC's ``kwparams`` (empty for a call sent by GET, which has no body)."""
    body = request.body
    return body["kwparams"] if isinstance(body, Mapping) else {}


#: Where each RPC that can act for another user names that user: a path into kwparams.
#: (get_historical_session has no such parameter: see ``include_all_users``.)
_ACTING_PARAMS: Mapping[str, tuple[str, ...]] = {
    "get_session": ("user",),
    "get_compute_envs": ("user",),
    "get_job_output": ("user",),
    "get_audited_job_output": ("user",),
    "get_audited_job_details": ("user",),
    "launch_session": ("username",),
    "resume_session": ("username",),
    "launch_job": ("job", "user"),
    "launch_audited_job": ("audited_job", "user"),
}


def acting_for(request: Request, user: str | None) -> Request:
    """``request`` made on behalf of ``user`` (a client's ``act_as``).

    A call that can name the user it acts for gets ``user`` there, unless the caller named
    one already; any other call (and any call when ``user`` is None) is returned as is. A
    call with a user is always sent by POST (``get_compute_envs`` answers GET only without
    parameters).
    """
    if user is None:
        return request
    method = rpc_method(request)
    where = _ACTING_PARAMS.get(method)
    if where is None:
        return request
    kw = dict(kwparams_of(request))
    target = kw
    for key in where[:-1]:
        inner = target.get(key)
        if not isinstance(inner, Mapping):
            return request
        target[key] = inner = dict(inner)
        target = inner
    if target.get(where[-1]) is not None:
        return request
    target[where[-1]] = user
    return _rpc_request(method, kw, idempotent=request.idempotent, stream=request.stream)


#: Every RPC method this module builds requests for.
METHODS = (
    "version",
    "get_users",
    "get_compute_envs",
    "launch_session",
    "get_session",
    "get_historical_session",
    "resume_session",
    "stop_session",
    "launch_job",
    "launch_audited_job",
    "stop_job",
    "stop_audited_job",
    "get_job_output",
    "get_audited_job_output",
    "get_audited_job_details",
)


def _text(value: Any, what: str) -> str:
    """A required, non-empty string parameter."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is required and must not be empty")
    return value


def _opt_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {type(value).__name__}")
    return value


def _session_id(value: Any, what: str) -> str:
    text = _text(value, what)
    if "," in text:  # ids travel comma-joined
        raise ValueError(f"{what} must not contain a comma: {text!r}")
    return text


def _session_ids(value: str | Iterable[str], what: str) -> str:
    """One id or a sequence of ids -> ``"id1,id2"``."""
    ids = [value] if isinstance(value, str) else list(value)
    if not ids:
        raise ValueError(f"{what} must not be empty")
    for i, v in enumerate(ids):
        # A plain, sound id passes at once; anything else gets _session_id's exact verdict.
        if type(v) is not str or not v or v.isspace() or "," in v:
            ids[i] = _session_id(v, f"{what}[{i}]")
    return ",".join(ids)


def _strings(value: Iterable[str], what: str) -> list[str]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a sequence of strings, not a single string")
    out = list(value)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise TypeError(f"{what}[{i}] must be a string, got {type(v).__name__}")
    return out


#: The cluster a session launches on when its launch parameters name none.
DEFAULT_CLUSTER = "Local"


def _launch_parameters(
    value: LaunchParameters | Mapping[str, Any], defaults: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """LaunchParameters (or a plain mapping, sent as given) with name and cluster checked;
    ``defaults`` fills those that are missing or empty."""
    if isinstance(value, LaunchParameters):
        data: dict[str, Any] = _LENIENT.unstructure(value)
    elif isinstance(value, Mapping):
        data = dict(value)
    else:
        raise TypeError(
            f"launch_parameters must be LaunchParameters or a mapping, got {type(value).__name__}"
        )
    for key, default in (defaults or {}).items():
        if data.get(key) is None or data.get(key) == "":
            data[key] = default
    for key in ("name", "cluster"):
        v = data.get(key)
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"launch_parameters.{key} is required")
    return data


def _hooks(value: SessionHook | str | Iterable[SessionHook | str], what: str) -> list[Any]:
    items: list[SessionHook | str] = (
        [value] if isinstance(value, (SessionHook, str)) else list(value)
    )
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = SessionHook(_text(item, f"{what}[{i}]"))
        if not isinstance(item, SessionHook):
            raise TypeError(f"{what}[{i}] must be a SessionHook or an exe string")
        out.append(_LENIENT.unstructure(item))
    return out


def _environment(
    value: Mapping[str, str] | Iterable[EnvironmentVariable], what: str
) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in value.items()]
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, EnvironmentVariable):
            raise TypeError(f"{what}[{i}] must be an EnvironmentVariable")
        out.append(_LENIENT.unstructure(item))
    return out


def _time_bound(value: datetime | str, what: str) -> str:
    """A datetime (naive = UTC) or an ISO-8601 string -> ``2025-07-23T00:00:00.000000Z``."""
    try:
        return format_timestamp(parse_timestamp(value) if isinstance(value, str) else value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{what}: {exc}") from None


def version() -> Request:
    """``version``: server version and enabled features."""
    return _rpc_request("version", idempotent=True, get=True)


def get_users() -> Request:
    """``get_users``: all users (admin token needed)."""
    return _rpc_request("get_users", idempotent=True, get=True)


def get_compute_envs(user: str | None = None) -> Request:
    """``get_compute_envs``: clusters and IDEs; ``user`` needs an admin token (sent by POST)."""
    if user is None:
        return _rpc_request("get_compute_envs", idempotent=True, get=True)
    return _rpc_request("get_compute_envs", {"user": _text(user, "user")}, idempotent=True)


def launch_session(
    workbench: str,
    *,
    name: str | None = None,
    username: str | None = None,
    open_file: str | None = None,
    working_directory: str | None = None,
    launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
    start_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
    stop_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
    environment: Mapping[str, str] | Sequence[EnvironmentVariable] | None = None,
) -> Request:
    """``launch_session``: start a session of IDE ``workbench`` (e.g. ``"RStudio"``).

    The name is given once: ``launch_parameters`` (required by servers with launcher
    sessions, harmless on others) are always sent, their ``name`` defaulting to the
    session's ``name`` (else the IDE's) and their ``cluster`` to ``"Local"``; the session's
    ``name`` defaults to the launch parameters' name when only that is given.
    Not idempotent: a retried launch may start a second session.
    """
    kw: dict[str, Any] = {"workbench": _text(workbench, "workbench")}
    params = _launch_parameters(
        launch_parameters if launch_parameters is not None else {},
        defaults={"name": name or workbench, "cluster": DEFAULT_CLUSTER},
    )
    if name is None:
        name = params["name"]
    for key, value in (
        ("name", name),
        ("username", username),
        ("open_file", open_file),
        ("working_directory", working_directory),
    ):
        if value is not None:
            kw[key] = _text(value, key)
    kw["launch_parameters"] = params
    if start_hooks is not None:
        kw["start_hooks"] = _hooks(start_hooks, "start_hooks")
    if stop_hooks is not None:
        kw["stop_hooks"] = _hooks(stop_hooks, "stop_hooks")
    if environment is not None:
        kw["environment"] = _environment(environment, "environment")
    return _rpc_request("launch_session", kw, idempotent=False)


def get_session(
    session_ids: str | Sequence[str] | None = None,
    *,
    user: str | None = None,
    fields: Sequence[str] | None = None,
    include_jobs: bool = False,
    include_all_jobs: bool = False,
) -> Request:
    """``get_session``: live sessions (all of the user's, or the given ids).

    ``fields`` limits the session fields returned; ``"id"`` is always added so results can
    be matched. ``include_all_jobs`` also returns ad-hoc jobs (not in the reference; sent
    only when True).
    """
    kw: dict[str, Any] = {}
    if session_ids is not None:
        kw["session_id"] = _session_ids(session_ids, "session_ids")
    if user is not None:
        kw["user"] = _text(user, "user")
    if fields is not None:
        names = _strings(fields, "fields")
        kw["fields"] = names if "id" in names else ["id", *names]
    # (``is not False`` first: the usual value skips the check's call.)
    if include_jobs is not False and _flag(include_jobs, "include_jobs"):
        kw["include_jobs"] = True
    if include_all_jobs is not False and _flag(include_all_jobs, "include_all_jobs"):
        kw["include_all_jobs"] = True
    return _rpc_request("get_session", kw, idempotent=True)


def get_historical_session(
    begin: datetime | str | None = None,
    end: datetime | str | None = None,
    *,
    include_jobs: bool = False,
    include_all_users: bool = False,
) -> Request:
    """``get_historical_session``: ended sessions whose end time is within [begin, end]."""
    kw: dict[str, Any] = {}
    if begin is not None:
        kw["filter_time_begin"] = _time_bound(begin, "begin")
    if end is not None:
        kw["filter_time_end"] = _time_bound(end, "end")
    if begin is not None and end is not None and kw["filter_time_begin"] > kw["filter_time_end"]:
        # Same fixed-width UTC format on both sides, so text order is time order.
        raise ValueError(
            f"begin ({kw['filter_time_begin']}) is after end ({kw['filter_time_end']})"
        )
    if _flag(include_jobs, "include_jobs"):
        kw["include_jobs"] = True
    if _flag(include_all_users, "include_all_users"):
        kw["include_all_users"] = True
    return _rpc_request("get_historical_session", kw, idempotent=True)


def resume_session(
    session_id: str,
    *,
    username: str | None = None,
    launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
) -> Request:
    """``resume_session``: resume a suspended session. Not idempotent."""
    kw: dict[str, Any] = {"session_id": _session_id(session_id, "session_id")}
    if username is not None:
        kw["username"] = _text(username, "username")
    if launch_parameters is not None:
        kw["launch_parameters"] = _launch_parameters(launch_parameters)
    return _rpc_request("resume_session", kw, idempotent=False)


def stop_session(
    session_ids: str | Sequence[str], *, force_quit: bool = False, suspend: bool = False
) -> Request:
    """``stop_session``: stop (or force-quit, or suspend) sessions.

    ``suspend`` is sent under both ``suspend_session`` (the reference) and ``suspend``
    (what a public client sends).
    """
    suspend = _flag(suspend, "suspend")
    kw = {
        "session_ids": _session_ids(session_ids, "session_ids"),
        "force_quit": _flag(force_quit, "force_quit"),
        "suspend_session": suspend,
        "suspend": suspend,
    }
    return _rpc_request("stop_session", kw, idempotent=False)


def _job_payload(spec: JobSpec, what: str) -> dict[str, Any]:
    """A JobSpec as the ``job`` / ``audited_job`` object, checked."""
    if not isinstance(spec, JobSpec):
        raise TypeError(f"{what} must be a JobSpec, got {type(spec).__name__}")
    for key in ("name", "cluster"):
        value = getattr(spec, key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what}.{key} is required")
    if not spec.exe and not spec.command:
        raise ValueError(f"{what}.exe or {what}.command is required")
    if spec.container_image is not None:
        if spec.container is not None and spec.container.image != spec.container_image:
            raise ValueError(f"{what}: give container or container_image, not both")
        spec = attrs.evolve(spec, container=Container(spec.container_image), container_image=None)
    payload: dict[str, Any] = _LENIENT.unstructure(spec)
    extra = payload.pop("extra", None) or {}
    modelled = {_LENIENT.wire_name(JobSpec, a.name) for a in attrs.fields(JobSpec)}
    for key, value in extra.items():
        if key in modelled:
            raise ValueError(f"{what}.extra[{key!r}] repeats a JobSpec field; set that instead")
        payload[key] = value
    return payload


def launch_job(spec: JobSpec, *, apply_config_settings: bool | None = None) -> Request:
    """``launch_job``. ``apply_config_settings=False`` skips launcher mounts and global
    settings. Not idempotent: a retried launch may start a second job."""
    kw: dict[str, Any] = {"job": _job_payload(spec, "job")}
    if apply_config_settings is not None:
        kw["apply_config_settings"] = _flag(apply_config_settings, "apply_config_settings")
    return _rpc_request("launch_job", kw, idempotent=False)


def launch_audited_job(spec: JobSpec, *, apply_config_settings: bool | None = None) -> Request:
    """``launch_audited_job``: like :func:`launch_job`, sent as ``audited_job``."""
    kw: dict[str, Any] = {"audited_job": _job_payload(spec, "audited_job")}
    if apply_config_settings is not None:
        kw["apply_config_settings"] = _flag(apply_config_settings, "apply_config_settings")
    return _rpc_request("launch_audited_job", kw, idempotent=False)


def stop_job(job_id: str, *, force: bool = False) -> Request:
    """``stop_job``; ``force`` sends the kill signal (``force_quit``)."""
    kw = {"job_id": _text(job_id, "job_id"), "force_quit": _flag(force, "force")}
    return _rpc_request("stop_job", kw, idempotent=False)


def stop_audited_job(audited_job_id: str, *, force: bool = False) -> Request:
    """``stop_audited_job``; ``force`` sends the kill signal (``force_quit``)."""
    kw = {
        "audited_job_id": _text(audited_job_id, "audited_job_id"),
        "force_quit": _flag(force, "force"),
    }
    return _rpc_request("stop_audited_job", kw, idempotent=False)


def get_job_output(job_id: str, *, user: str | None = None) -> Request:
    """``get_job_output``: a stream of output chunks."""
    kw: dict[str, Any] = {"job_id": _text(job_id, "job_id")}
    if user is not None:
        kw["user"] = _text(user, "user")
    return _rpc_request("get_job_output", kw, idempotent=True, stream=True)


def get_audited_job_output(audited_job_id: str, *, user: str | None = None) -> Request:
    """``get_audited_job_output``: a stream of chunks, or one object for a finished job.

    The id is sent as ``audited_job_id`` (the reference's example) and ``job_id`` (its
    parameter table).
    """
    job_id = _text(audited_job_id, "audited_job_id")
    kw: dict[str, Any] = {"audited_job_id": job_id, "job_id": job_id}
    if user is not None:
        kw["user"] = _text(user, "user")
    return _rpc_request("get_audited_job_output", kw, idempotent=True, stream=True)


def get_audited_job_details(audited_job_id: str, *, user: str | None = None) -> Request:
    """``get_audited_job_details``: auditing details of a completed audited job."""
    kw: dict[str, Any] = {"audited_job_id": _text(audited_job_id, "audited_job_id")}
    if user is not None:
        kw["user"] = _text(user, "user")
    return _rpc_request("get_audited_job_details", kw, idempotent=True)
