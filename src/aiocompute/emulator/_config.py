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
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs

__all__ = [
    "ROLES",
    "EmulatorConfig",
    "FaultConfig",
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


def _to_range(value: Any) -> tuple[float, float]:
    """Accept ``(low, high)`` or one number (a fixed delay)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), float(value))
    try:
        low, high = value
        return (float(low), float(high))
    except (TypeError, ValueError):
        raise ValueError(f"expected a (low, high) pair of seconds, got {value!r}") from None


def _check_range(
    _inst: object, attribute: attrs.Attribute[Any], value: tuple[float, float]
) -> None:
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(
            f"{attribute.name} must be a (low, high) pair with 0 <= low <= high, got {value!r}"
        )


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


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
    job_chunk_count: int = attrs.field(default=10, validator=_non_negative)
    job_chunk_interval: float = attrs.field(default=0.02, validator=_non_negative)
    job_chunk_bytes: int = attrs.field(default=64, validator=_non_negative)
    job_exit_code: int = 0
    job_stderr_every: int = attrs.field(default=0, validator=_non_negative)
    job_stop_delay: float = attrs.field(default=0.02, validator=_non_negative)

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
        """Raise :class:`ValueError` naming the first switch holding a value out of range."""
        for name in ("latency", "error_rate", "rate_limit_rps"):
            for key, value in getattr(self, name).items():
                if not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"faults.{name}[{key!r}] must be a number >= 0: {value!r}")
        for key, rate in self.error_rate.items():
            if rate > 1:
                raise ValueError(f"faults.error_rate[{key!r}] must be within 0..1: {rate!r}")
        for name in ("drop_next", "bad_gateway_next", "error_next", "rate_limit_next"):
            for key, count in getattr(self, name).items():
                if not isinstance(count, int) or count < 0:
                    raise ValueError(f"faults.{name}[{key!r}] must be an int >= 0: {count!r}")
        for key, kind in self.malformed.items():
            if kind not in MALFORMED_KINDS:
                raise ValueError(
                    f"faults.malformed[{key!r}] must be one of {MALFORMED_KINDS}: {kind!r}"
                )
        if not 400 <= self.error_status <= 599:
            raise ValueError(
                f"faults.error_status must be an HTTP error status: {self.error_status!r}"
            )


@attrs.frozen
class EmulatorConfig:
    """Everything an :class:`~aiocompute.emulator.Emulator` starts from.

    Attributes:
        workbench: the Posit Workbench API (served under ``/workbench``).
        faults: the initial fault switches; the emulator works on a copy, ``emu.faults``.
        shutdown_timeout: seconds ``stop()`` lets in-flight handlers finish before cancelling.
        request_log_size: how many recent requests ``emu.requests`` keeps.
    """

    workbench: WorkbenchEmulatorConfig = attrs.field(factory=WorkbenchEmulatorConfig)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    shutdown_timeout: float = attrs.field(default=2.0, validator=_non_negative)
    request_log_size: int = attrs.field(default=10_000, validator=_non_negative)
