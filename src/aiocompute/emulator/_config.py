"""Configuration of the emulator: timings, identities, wire quirks and fault switches.

:class:`EmulatorConfig` and :class:`WorkbenchEmulatorConfig` are frozen: they describe how an
emulator starts. :class:`FaultConfig` is mutable on purpose: an emulator copies it at
construction into ``emu.faults``, and a test flips switches there while requests are flowing.

Fault keys
----------
Every per-request fault is a mapping whose keys say which requests it hits, most specific
first: ``"workbench.get_session"`` (one method of one API), ``"workbench"`` (every method of
that API) or ``"*"`` (every API request). Requests that match no route are never faulted.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs

from .._core.checks import count, number, probability, validator

__all__ = [
    "ROLES",
    "ETEngineEmulatorConfig",
    "EmulatorConfig",
    "FaultConfig",
    "LakeSailEmulatorConfig",
    "QiskitEmulatorConfig",
    "QiskitJobsConfig",
    "WorkbenchEmulatorConfig",
]

#: Token roles understood by the Workbench emulator, weakest first.
ROLES = ("user", "admin", "super-admin")

#: The malformed-body kinds :attr:`FaultConfig.malformed` understands.
MALFORMED_KINDS = ("truncated", "garbage", "html", "empty")

#: Stream framings understood by the Workbench job output stream.
FRAMINGS = ("ndjson", "concatenated", "pretty")

_DEFAULT_TOKENS: dict[str, tuple[str, str]] = {
    "user-token": ("alice", "user"),
    "admin-token": ("admin", "admin"),
    "super-token": ("root", "super-admin"),
    "bob-token": ("bob", "user"),
}
_DEFAULT_COOKIES: dict[str, str] = {"rpc-cookie": "alice"}
_DEFAULT_FEATURES = (
    "launcher_sessions",
    "launcher_jobs",
    "audited_jobs",
    "session_suspend",
    "positron",
    "vscode",
    "jupyter",
)
_DEFAULT_VERSION: dict[str, str] = {
    "major": "2024",
    "minor": "12",
    "patch": "1",
    "build_number": "563",
    "release_name": "Kousa Dogwood",
    "build_type": "release",
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_range(value: Any) -> Any:
    """Accept ``(low, high)`` or one number (a fixed delay); anything else is left for
    :func:`_check_range`, which can name the field."""
    if _is_number(value):
        return (float(value), float(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(float(v) if _is_number(v) else v for v in value)
    return value


def _check_range(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    name = f"{type(inst).__name__}.{attribute.name}"
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{name} must be a number of seconds or a (low, high) pair, got {value!r}")
    low = number(value[0], f"{name} (low)", minimum=0, unit="seconds")
    number(value[1], f"{name} (high)", minimum=low, unit="seconds")


# Validators of the settings, named as the caller wrote them ("QiskitJobsConfig.fail_rate").
_non_negative = validator(number, None, minimum=0)
_positive = validator(number, None, above=0)
_fraction = validator(probability, None)
_count = validator(count, None)
_positive_count = validator(count, None, minimum=1)


def _frozen_tokens(value: Mapping[str, Any]) -> Mapping[str, tuple[str, str]]:
    tokens: dict[str, tuple[str, str]] = {}
    for token, ident in dict(value).items():
        try:
            user, role = ident
        except (TypeError, ValueError):
            raise ValueError(
                "tokens must map a token to a (username, role) pair; "
                f"the entry for user {ident!r} is not a pair"
            ) from None
        if role not in ROLES:
            raise ValueError(f"token role for user {user!r} must be one of {ROLES}, got {role!r}")
        if not isinstance(token, str) or not token:
            raise ValueError(f"tokens must be non-empty strings (user {user!r})")
        tokens[token] = (str(user), str(role))
    return MappingProxyType(tokens)


def _frozen_cookies(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in dict(value).items()})


def _frozen_str_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in dict(value).items()})


@attrs.frozen
class WorkbenchEmulatorConfig:
    """How the emulated Posit Workbench server behaves.

    Timings are ``(low, high)`` ranges in seconds; each delay is drawn uniformly from its range
    by the emulator's seeded RNG, so one seed gives the same delays in the same launch order.
    A single number means a fixed delay.

    Identities:
        tokens: ``Authorization: Bearer <token>`` values mapped to ``(username, role)``, role
            one of ``"user"``, ``"admin"``, ``"super-admin"``.
        rpc_cookies: ``X-RS-Session-Server-RPC-Cookie`` values mapped to a username (role user).
        cookie_denied_methods: methods answering HTTP 401 to the RPC cookie, as real servers do.

    Sessions (``activity_state``):
        session_launch_delay: launching -> pending. session_pending_delay: pending -> starting.
        session_starting_delay: starting -> running (and pending -> failed for a failing launch).
        session_stop_delay: each step of a normal stop (shutting_down -> quitting -> ended).
        session_kill_delay: force quit, killed -> ended.
        session_suspend_delay: suspending -> suspended. session_resume_delay: resuming -> running.
        suspendable_workbenches: IDEs whose sessions can suspend; others simply stop.
        require_launch_parameters: launch_session without ``launch_parameters`` is an error
            (the server has launcher sessions enabled).

    Jobs (``status``), each overridable per job through its args (see ``workbench`` module):
        job_pending_delay: Pending -> Running. job_chunk_count / job_chunk_interval /
        job_chunk_bytes: the output produced while Running; the job finishes with its last
        chunk. job_exit_code: exitCode when Finished. job_stderr_every: every n-th chunk goes
        to stderr (0: never). job_stop_delay: grace between stop_job and Killed (force: none).
        job_write_log_size: how many chunk writes each job remembers in ``writes`` (the most
        recent; see the ``workbench`` module).

    Wire quirks:
        job_result_nesting: ``"double"`` answers launch_job as the reference shows,
            ``{"result": {"result": {"job": ...}}}``; ``"single"`` as public clients read it.
        stream_framing: job output objects ``"ndjson"`` (one per line), ``"concatenated"``
            (no separator) or ``"pretty"`` (indented, newline between values).
        adhoc_jobs_require_include_all: when true, get_session lists launch_job jobs only with
            ``include_all_jobs``; otherwise ``include_jobs`` is enough.
    """

    tokens: Mapping[str, tuple[str, str]] = attrs.field(
        factory=lambda: dict(_DEFAULT_TOKENS), converter=_frozen_tokens
    )
    rpc_cookies: Mapping[str, str] = attrs.field(
        factory=lambda: dict(_DEFAULT_COOKIES), converter=_frozen_cookies
    )
    cookie_denied_methods: frozenset[str] = attrs.field(
        default=frozenset({"launch_job"}), converter=frozenset
    )

    session_launch_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    session_pending_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    session_starting_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    session_stop_delay: tuple[float, float] = attrs.field(
        default=(0.02, 0.06), converter=_to_range, validator=_check_range
    )
    session_kill_delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.02), converter=_to_range, validator=_check_range
    )
    session_suspend_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.1), converter=_to_range, validator=_check_range
    )
    session_resume_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    suspendable_workbenches: frozenset[str] = attrs.field(
        default=frozenset({"RStudio"}), converter=frozenset
    )
    require_launch_parameters: bool = True

    job_pending_delay: tuple[float, float] = attrs.field(
        default=(0.02, 0.08), converter=_to_range, validator=_check_range
    )
    job_chunk_count: int = attrs.field(default=10, validator=_count)
    job_chunk_interval: float = attrs.field(default=0.02, validator=_non_negative)
    job_chunk_bytes: int = attrs.field(default=64, validator=_count)
    job_exit_code: int = 0
    job_stderr_every: int = attrs.field(default=0, validator=_count)
    job_stop_delay: float = attrs.field(default=0.02, validator=_non_negative)
    job_write_log_size: int = attrs.field(default=10_000, validator=_count)

    job_result_nesting: Literal["double", "single"] = attrs.field(
        default="double", validator=attrs.validators.in_(("double", "single"))
    )
    stream_framing: Literal["ndjson", "concatenated", "pretty"] = attrs.field(
        default="ndjson", validator=attrs.validators.in_(FRAMINGS)
    )
    adhoc_jobs_require_include_all: bool = False

    version: Mapping[str, str] = attrs.field(
        factory=lambda: dict(_DEFAULT_VERSION), converter=_frozen_str_map
    )
    features: tuple[str, ...] = attrs.field(default=_DEFAULT_FEATURES, converter=tuple)


def _count_map(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


#: Roles of LakeSail principals: members (user tokens) with their admin level, and service
#: accounts (service-account keys).
LAKESAIL_ROLES = ("member", "team_admin", "org_admin", "service_account")

_LAKESAIL_ID = re.compile(r"[A-Z0-9]{1,20}")

_DEFAULT_LAKESAIL_TOKENS: dict[str, tuple[str, str]] = {
    "lakesail-token": ("MALICE", "member"),
    "lakesail-bob-token": ("MBOB", "member"),
    "lakesail-admin-token": ("MADMIN", "org_admin"),
    "lakesail-sa-key": ("SACIBOT", "service_account"),
}


def _frozen_lakesail_tokens(value: Mapping[str, Any]) -> Mapping[str, tuple[str, str]]:
    tokens: dict[str, tuple[str, str]] = {}
    for token, ident in dict(value).items():
        try:
            principal, role = ident
        except (TypeError, ValueError):
            raise ValueError(
                "LakeSail tokens must map a token to a (principal id, role) pair; "
                f"the entry for {ident!r} is not a pair"
            ) from None
        if role not in LAKESAIL_ROLES:
            raise ValueError(f"LakeSail role of {principal!r} must be one of {LAKESAIL_ROLES}")
        if not isinstance(principal, str) or _LAKESAIL_ID.fullmatch(principal) is None:
            raise ValueError(f"LakeSail principal ids match ^[A-Z0-9]{{1,20}}$, got {principal!r}")
        if not isinstance(token, str) or not token:
            raise ValueError(f"LakeSail tokens must be non-empty strings ({principal!r})")
        tokens[token] = (principal, str(role))
    return MappingProxyType(tokens)


def _lakesail_id(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or _LAKESAIL_ID.fullmatch(value) is None:
        raise ValueError(f"{attribute.name} must match ^[A-Z0-9]{{1,20}}$, got {value!r}")


@attrs.frozen
class LakeSailEmulatorConfig:
    """How the emulated LakeSail platform behaves (see :mod:`aiocompute.emulator.lakesail`).

    Identities:
        tokens: ``Authorization: Bearer <token>`` values mapped to ``(principal id, role)``:
            role ``"member"``, ``"team_admin"`` or ``"org_admin"`` for user tokens, and
            ``"service_account"`` for service-account keys. Members see their own sessions,
            team admins their team's, org admins all.
        organization_id / team_id: the one organization and team everybody belongs to.

    Timings (``(low, high)`` seconds, drawn from the seeded RNG; one number = fixed):
        provision_delay: pending -> active (or -> failed, for names containing ``emu-fail``).
        idle_delay: active -> idle, unless the session's ``config.idleTimeoutSeconds`` says.

    Wire:
        token_duration_seconds / max_token_duration_seconds: default and largest lifetime of
            a session proxy token.
        error_style: the shape of error bodies (the real one is not published):
            ``"message"`` ``{"code", "message"}``, ``"error"`` ``{"error": {"code",
            "message"}}``, ``"detail"`` ``{"detail": "..."}``, or ``"text"`` (plain text).
    """

    tokens: Mapping[str, tuple[str, str]] = attrs.field(
        factory=lambda: dict(_DEFAULT_LAKESAIL_TOKENS), converter=_frozen_lakesail_tokens
    )
    organization_id: str = attrs.field(default="ORGACME", validator=_lakesail_id)
    team_id: str = attrs.field(default="TEAMDATA", validator=_lakesail_id)
    provision_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    idle_delay: tuple[float, float] = attrs.field(
        default=(0.5, 1.0), converter=_to_range, validator=_check_range
    )
    token_duration_seconds: int = attrs.field(default=3600, validator=_count)
    max_token_duration_seconds: int = attrs.field(default=86400, validator=_count)
    error_style: Literal["message", "error", "detail", "text"] = attrs.field(
        default="message", validator=attrs.validators.in_(("message", "error", "detail", "text"))
    )


#: The instance CRN the Qiskit emulator knows by default.
QISKIT_DEFAULT_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"

_DEFAULT_QISKIT_KEYS: dict[str, str] = {
    "qiskit-key": "user-alice",
    "qiskit-key-bob": "user-bob",
}


def _nonempty_str_map(value: Mapping[str, str]) -> Mapping[str, str]:
    out = {str(k): str(v) for k, v in dict(value).items()}
    if any(not k or not v for k, v in out.items()):
        raise ValueError("keys and values must be non-empty strings")
    return MappingProxyType(out)


@attrs.frozen
class QiskitJobsConfig:
    """How emulated Qiskit Runtime jobs behave (``QiskitEmulatorConfig(jobs=...)``; see
    :mod:`aiocompute.emulator._qiskit_jobs`).

    Timings (``(low, high)`` seconds drawn from the seeded RNG; one number = fixed):
        queue_delay: ``Queued`` -> ``Running``. run_delay: ``Running`` -> the end.
        quantum_seconds: the usage a job that ran is billed (``usage.quantum_seconds``).

    Outcomes:
        fail_rate: the seeded probability (0..1) that a job ends ``Failed``.
        Params steer one job: ``"emu_outcome": "fail"`` fails it, ``"too_long"`` cancels
        it as having run too long (reason code 1305), ``"stuck"`` keeps it queued.

    Limits (None: no limit):
        rate_limit: most job creations per user within ``rate_window`` seconds; more get
            429 with ``Retry-After`` (the service documents 5 per minute).
        usage_limit: quantum seconds an instance may use; once its jobs have used that
            much, job creation answers 409 "Usage exceeds instance limit".

    Results:
        sampler_num_bits: classical bits measured per shot by every sampler pub.
        default_shots: shots of a sampler pub that names none.
    """

    queue_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    run_delay: tuple[float, float] = attrs.field(
        default=(0.1, 0.3), converter=_to_range, validator=_check_range
    )
    quantum_seconds: tuple[float, float] = attrs.field(
        default=(1.0, 4.0), converter=_to_range, validator=_check_range
    )
    fail_rate: float = attrs.field(default=0.0, validator=_fraction)
    rate_limit: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive_count)
    )
    rate_window: float = attrs.field(default=60.0, validator=_positive)
    usage_limit: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_negative)
    )
    sampler_num_bits: int = attrs.field(default=2, validator=_positive_count)
    default_shots: int = attrs.field(default=1024, validator=_positive_count)


@attrs.frozen
class QiskitEmulatorConfig:
    """How the emulated Qiskit Runtime service and IBM Cloud IAM behave
    (see :mod:`aiocompute.emulator.qiskit`).

    Identities:
        api_keys: IBM Cloud API keys (exchanged at the IAM endpoint) mapped to a user id.
        instances: instance CRNs accepted in ``Service-CRN``.
        backends: backend names a session may be created on (plus the steering names
            ``emu_stuck`` and ``emu_offline``).
        token_lifetime: seconds an IAM token lives (``expires_in``); make it short to test
            refreshes.

    Timings (``(low, high)`` seconds drawn from the seeded RNG; one number = fixed):
        activate_delay: open -> active. interactive_ttl: active -> inactive.
        pending_inactive_delay: time shown as ``pending_inactive`` on the way (0: never).
        drain_delay: after ``accepting_jobs: false``, until closed.
        ttl_scale: emulated seconds per second of a session's ``max_ttl`` (closing time).

    Wire:
        null_backend_while_open: ``backend_name`` is null while the session is open.
        error_shape: ``"mixed"`` (``{"error": ...}`` for 401/403, ``{"errors": [...]}``
            otherwise), ``"errors"`` or ``"error"`` for every error.

    Jobs:
        jobs: timings, outcomes, rate and usage limits (:class:`QiskitJobsConfig`).
    """

    api_keys: Mapping[str, str] = attrs.field(
        factory=lambda: dict(_DEFAULT_QISKIT_KEYS), converter=_nonempty_str_map
    )
    instances: frozenset[str] = attrs.field(
        default=frozenset({QISKIT_DEFAULT_INSTANCE}), converter=frozenset
    )
    backends: tuple[str, ...] = attrs.field(
        default=("ibm_brisbane", "ibm_kyiv", "ibm_torino", "ibm_fez"), converter=tuple
    )
    token_lifetime: float = attrs.field(default=3600.0, validator=_positive)
    activate_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    interactive_ttl: tuple[float, float] = attrs.field(
        default=(1.0, 2.0), converter=_to_range, validator=_check_range
    )
    pending_inactive_delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=_to_range, validator=_check_range
    )
    drain_delay: tuple[float, float] = attrs.field(
        default=(0.05, 0.15), converter=_to_range, validator=_check_range
    )
    ttl_scale: float = attrs.field(default=1.0, validator=_positive)
    null_backend_while_open: bool = True
    error_shape: Literal["mixed", "errors", "error"] = attrs.field(
        default="mixed", validator=attrs.validators.in_(("mixed", "errors", "error"))
    )
    jobs: QiskitJobsConfig = attrs.field(factory=QiskitJobsConfig)


_DEFAULT_ET_KEYS: dict[str, str] = {"et-key": "user-1", "et-key-bob": "user-2"}
_DEFAULT_ET_TOOLS: dict[str, tuple[str, str]] = {
    "tool-hello": ("hello", "Prints hello to its log"),
    "tool-sim": ("simulate", "Runs one simulation per argument set"),
}
_DEFAULT_ET_FILESYSTEMS: dict[str, str] = {"fs-data": "data", "fs-scratch": "scratch"}


def _frozen_tools(value: Mapping[str, Any]) -> Mapping[str, tuple[str, str]]:
    tools: dict[str, tuple[str, str]] = {}
    for tool_id, info in dict(value).items():
        try:
            name, description = info
        except (TypeError, ValueError):
            raise ValueError(
                f"tools must map a tool id to a (name, description) pair; {tool_id!r} does not"
            ) from None
        tools[str(tool_id)] = (str(name), str(description))
    return MappingProxyType(tools)


@attrs.frozen
class ETEngineEmulatorConfig:
    """How the emulated ET Engine behaves (see :mod:`aiocompute.emulator.etengine`).

    Identities:
        api_keys: keys (sent raw in ``Authorization``) mapped to a user id.
        tools: tool ids mapped to ``(name, description)``; others answer 403.
        filesystems: filesystem ids mapped to names, usable in a batch's hardware.

    Job timings (``(low, high)`` seconds drawn from the seeded RNG; one number = fixed):
        register_delay: invisible before the job is registered. submitting_delay: shown as
        ``SUBMITTING`` (listed, not counted). phase_delay: each of SUBMITTED, PENDING,
        RUNNABLE, STARTING. run_delay: RUNNING. failure_rate: share of jobs that fail.

    Wire:
        status_case: job statuses ``"upper"``, ``"lower"`` or ``"mixed"`` (per job, seeded).
        status_shape: ``GET /batches/<id>`` as the reference's ``"flat"`` lower-case counts,
            or ``"nested"``: a description with upper-case counts under ``submitted_jobs``.
        job_detail_as_list: the job description as a list of one (the reference) or bare.
        time_format: job times as ``"epoch_ms"`` (AWS Batch) or ``"iso"`` strings.
        create_answer: the new batch id as ``"text"``, ``"json"`` or an ``"empty"`` body.
        unknown_batch_status: the status unknown batch ids get (500, as the service).
    """

    api_keys: Mapping[str, str] = attrs.field(
        factory=lambda: dict(_DEFAULT_ET_KEYS), converter=_nonempty_str_map
    )
    tools: Mapping[str, tuple[str, str]] = attrs.field(
        factory=lambda: dict(_DEFAULT_ET_TOOLS), converter=_frozen_tools
    )
    filesystems: Mapping[str, str] = attrs.field(
        factory=lambda: dict(_DEFAULT_ET_FILESYSTEMS), converter=_nonempty_str_map
    )
    register_delay: tuple[float, float] = attrs.field(
        default=(0.01, 0.03), converter=_to_range, validator=_check_range
    )
    submitting_delay: tuple[float, float] = attrs.field(
        default=(0.01, 0.03), converter=_to_range, validator=_check_range
    )
    phase_delay: tuple[float, float] = attrs.field(
        default=(0.01, 0.04), converter=_to_range, validator=_check_range
    )
    run_delay: tuple[float, float] = attrs.field(
        default=(0.03, 0.1), converter=_to_range, validator=_check_range
    )
    failure_rate: float = attrs.field(default=0.0, validator=_fraction)
    status_case: Literal["upper", "lower", "mixed"] = attrs.field(
        default="mixed", validator=attrs.validators.in_(("upper", "lower", "mixed"))
    )
    status_shape: Literal["flat", "nested"] = attrs.field(
        default="flat", validator=attrs.validators.in_(("flat", "nested"))
    )
    job_detail_as_list: bool = True
    time_format: Literal["epoch_ms", "iso"] = attrs.field(
        default="epoch_ms", validator=attrs.validators.in_(("epoch_ms", "iso"))
    )
    create_answer: Literal["text", "json", "empty"] = attrs.field(
        default="text", validator=attrs.validators.in_(("text", "json", "empty"))
    )
    unknown_batch_status: int = attrs.field(default=500, validator=attrs.validators.in_((404, 500)))


#: The stream fault switches holding a byte / value count or a count of streams.
_STREAM_FAULT_INTS = (
    "drop_stream_after_bytes",
    "drop_stream_count",
    "close_stream_after_bytes",
    "close_stream_count",
    "stall_stream_after_bytes",
    "stall_stream_count",
    "stream_error_after_chunks",
    "stream_error_count",
)


@attrs.define
class FaultConfig:
    """Live fault switches. Mutate ``emu.faults`` at any time; the next request sees it.

    Per-request faults (keys: ``"api.method"``, ``"api"`` or ``"*"``, most specific wins),
    applied in this order before the API answers:

        latency: seconds added to every matching request (e.g. ``{"workbench": 0.02}``).
        drop_next: the next N matching requests have their connection closed, no answer.
        bad_gateway_next: the next N matching requests get a proxy's HTML 502 page.
        error_next: the next N matching requests get an HTML ``error_status`` page.
        error_rate: probability (0..1, seeded RNG) that a request gets that HTML page.
        rate_limit_next: the next N matching requests get 429 with ``Retry-After``.
        rate_limit_rps: at most this many requests per second per key (token bucket,
            burst of one second's worth); the excess gets 429 with ``Retry-After``.
        malformed: kind of broken body for matching requests, while set: ``"truncated"``
            (half the JSON), ``"garbage"`` (not JSON), ``"html"`` (a 200 HTML login page),
            ``"empty"`` (a 200 with no body). Streams honour it too: truncated ends the
            stream cleanly in the middle of an object, garbage injects junk after the first one.

    ``*_next`` counters are decremented as they fire and stop at 0.

    Stream faults hit streamed responses (Workbench job output). Each has a count of streams
    it applies to (``None``: every stream), decremented as streams start:

        drop_stream_after_bytes / drop_stream_count: cut the connection abruptly (no clean
            chunked end) once this many body bytes were sent, so a client has to resume.
        close_stream_after_bytes / close_stream_count: end the stream cleanly (a proper
            chunked terminator, the connection kept alive) once this many body bytes were
            sent, while the job still runs: what a proxy that times out long streams does.
            The client cannot tell it from the end of the output except by asking.
        stall_stream_after_bytes / stall_seconds / stall_stream_count: stop sending for
            ``stall_seconds`` once this many body bytes were sent.
        stream_error_after_chunks / stream_error_count: after this many objects, send
            ``{"error": {"code": 500, "message": ...}}`` and end the stream.
    """

    latency: dict[str, float] = attrs.field(factory=dict, converter=_count_map)
    drop_next: dict[str, int] = attrs.field(factory=dict, converter=_count_map)
    bad_gateway_next: dict[str, int] = attrs.field(factory=dict, converter=_count_map)
    error_next: dict[str, int] = attrs.field(factory=dict, converter=_count_map)
    error_rate: dict[str, float] = attrs.field(factory=dict, converter=_count_map)
    error_status: int = 503
    rate_limit_next: dict[str, int] = attrs.field(factory=dict, converter=_count_map)
    rate_limit_rps: dict[str, float] = attrs.field(factory=dict, converter=_count_map)
    retry_after: int = 1
    malformed: dict[str, str] = attrs.field(factory=dict, converter=_count_map)

    drop_stream_after_bytes: int | None = None
    drop_stream_count: int | None = 1
    close_stream_after_bytes: int | None = None
    close_stream_count: int | None = 1
    stall_stream_after_bytes: int | None = None
    stall_seconds: float = 1.0
    stall_stream_count: int | None = 1
    stream_error_after_chunks: int | None = None
    stream_error_count: int | None = 1

    def reset(self) -> None:
        """Turn every fault off (back to the defaults)."""
        fresh = FaultConfig()
        for field in attrs.fields(FaultConfig):
            setattr(self, field.name, getattr(fresh, field.name))

    def copy(self) -> FaultConfig:
        """An independent deep copy (the emulator's live switches start as one)."""
        return copy.deepcopy(self)

    def check(self) -> None:
        """Raise :class:`ValueError` naming the first switch holding a value out of range
        (:class:`TypeError` for one that is not a number of the right kind)."""
        for name in ("latency", "rate_limit_rps"):
            for key, value in getattr(self, name).items():
                number(value, f"faults.{name}[{key!r}]", minimum=0)
        for key, rate in self.error_rate.items():
            probability(rate, f"faults.error_rate[{key!r}]")
        for name in ("drop_next", "bad_gateway_next", "error_next", "rate_limit_next"):
            for key, value in getattr(self, name).items():
                count(value, f"faults.{name}[{key!r}]")
        for key, kind in self.malformed.items():
            if kind not in MALFORMED_KINDS:
                raise ValueError(
                    f"faults.malformed[{key!r}] must be one of {MALFORMED_KINDS}: {kind!r}"
                )
        for name in _STREAM_FAULT_INTS:
            value = getattr(self, name)
            if value is not None:
                count(value, f"faults.{name}")
        number(self.stall_seconds, "faults.stall_seconds", minimum=0, unit="seconds")
        count(self.retry_after, "faults.retry_after")
        count(self.error_status, "faults.error_status", minimum=400, maximum=599)


@attrs.frozen
class EmulatorConfig:
    """Everything an :class:`~aiocompute.emulator.Emulator` starts from.

    Attributes:
        workbench: the Posit Workbench API (served under ``/workbench``).
        lakesail: the LakeSail platform API (served under ``/lakesail/api/v1``).
        qiskit: Qiskit Runtime sessions and IBM Cloud IAM (served under ``/qiskit``).
        etengine: the ET Engine batches API (served under ``/etengine/v1``).
        faults: the initial fault switches; the emulator works on a copy, ``emu.faults``.
        shutdown_timeout: seconds ``stop()`` lets in-flight handlers finish before cancelling.
        request_log_size: how many recent requests ``emu.requests`` keeps.
    """

    workbench: WorkbenchEmulatorConfig = attrs.field(factory=WorkbenchEmulatorConfig)
    lakesail: LakeSailEmulatorConfig = attrs.field(factory=LakeSailEmulatorConfig)
    qiskit: QiskitEmulatorConfig = attrs.field(factory=QiskitEmulatorConfig)
    etengine: ETEngineEmulatorConfig = attrs.field(factory=ETEngineEmulatorConfig)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    shutdown_timeout: float = attrs.field(default=2.0, validator=_non_negative)
    request_log_size: int = attrs.field(default=10_000, validator=_count)
