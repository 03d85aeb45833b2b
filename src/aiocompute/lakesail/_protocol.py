"""LakeSail platform workloads API, sans I/O: request building and response reading.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.

Requests: one builder per endpoint of the reference returns a
:class:`~aiocompute._core.protocol_kit.Request` (HTTP method, path under the API base, query
parameters, JSON body, whether it may be retried once sent, the operation's name).
Arguments are checked first: ids must match ``^[A-Z0-9]{1,20}$``, ``limit`` must be within
0..100; bad ones raise :class:`ValueError` / :class:`TypeError` naming the parameter.

Responses: the ``parse_*`` functions read decoded JSON into models. Session lists carry
references in ``items`` and the objects in ``included.sessions`` (and ``members``,
``serviceAccounts``, ``workloads``, ``workloadConfigs``): :func:`parse_session_list` joins
them by ``id`` and raises :class:`~aiocompute.ProtocolError` for a reference whose session
was not included. :func:`error_parser` reads the (unpublished) error format leniently.

Quirks kept from the reference: the session list filters are spelled ``teamId`` and
``endpoint_type`` (one camelCase, one snake_case); the workload-config endpoints live under
``/workloads/compute-configs``; ``marker`` is opaque and absent on the last page.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen

from .._core.checks import count
from .._core.protocol_kit import Request, path_id, read_json
from .._core.serde import Converters, structure
from .._exceptions import ProtocolError, redact
from .models import (
    EndpointType,
    Member,
    ServiceAccount,
    Session,
    SessionConfig,
    SessionList,
    SessionRef,
    SessionStatus,
    SessionToken,
    Workload,
    WorkloadConfig,
    WorkloadConfigList,
    WorkloadSettings,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ID_PATTERN",
    "MAX_LIMIT",
    "OPERATIONS",
    "check_id",
    "close_session",
    "converter",
    "create_session",
    "create_workload_config",
    "error_parser",
    "get_session",
    "get_workload_config",
    "issue_session_token",
    "list_sessions",
    "list_workload_configs",
    "parse_session",
    "parse_session_list",
    "parse_session_token",
    "parse_workload_config",
    "parse_workload_config_list",
    "relaunch_session",
    "session_state",
]

#: Where the platform's API lives.
DEFAULT_BASE_URL = "https://platform.lakesail.com/api/v1"
#: Every id (sessions, teams, members, configs...) matches this.
ID_PATTERN = r"^[A-Z0-9]{1,20}$"
_ID = re.compile(r"[A-Z0-9]{1,20}")
#: The largest page a list accepts.
MAX_LIMIT = 100

# --------------------------------------------------------------------------- converters


#: The LakeSail converters: ``converter()`` is the lenient one, ``converter(strict=True)``
#: the strict one (unknown keys and wrong JSON types raise).
converter = Converters(naming="camel")
# Requests are written with the lenient converter.
_LENIENT = converter.lenient


# --------------------------------------------------------------------------- requests


#: Every operation of the reference, by name.
OPERATIONS = (
    "list_sessions",
    "create_session",
    "get_session",
    "close_session",
    "issue_session_token",
    "relaunch_session",
    "list_workload_configs",
    "create_workload_config",
    "get_workload_config",
)

_SESSIONS = "/workloads/sessions"
_CONFIGS = "/workloads/compute-configs"


def _show(value: Any) -> str:
    """A value for an error message: short, and scrubbed in case it is a credential."""
    text = repr(value)
    if len(text) > 40:
        text = text[:39] + "…"
    return redact(text)


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a valid LakeSail id (``^[A-Z0-9]{1,20}$``), else ValueError/TypeError."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string id, got {type(value).__name__}")
    if _ID.fullmatch(value) is None:
        raise ValueError(
            f"{what} must be 1 to 20 upper-case letters or digits ({ID_PATTERN}), "
            f"got {_show(value)}"
        )
    return value


def _path_id(value: Any, what: str) -> str:
    # LakeSail's own format first (its message says what an id looks like), then the
    # check every API shares, so the path stays safe even if the format is ever widened.
    return path_id(check_id(value, what), what)


def _opt_id(value: Any, what: str) -> str | None:
    return None if value is None else check_id(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


def _opt_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _choice(value: Any, enum_cls: type[enum.Enum], what: str) -> str | None:
    """An enum member or a string (values this SDK does not know yet are sent as given)."""
    if value is None:
        return None
    if isinstance(value, enum_cls):
        return str(value.value)
    text = _text(value, what)
    if text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"{what} must not contain spaces, got {_show(text)}")
    return text


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    return count(value, "limit", maximum=MAX_LIMIT)


def _marker(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"marker must be a string, got {type(value).__name__}")
    return value or None


def _seconds(value: Any, what: str, *, positive: bool = False) -> int | None:
    if value is None:
        return None
    # Whole seconds: the API's duration fields are integers.
    return count(value, what, minimum=1 if positive else 0)


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping of strings to strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{what}[{key!r}] must map a string to a string")
        out[key] = item
    return out


def _model_or_mapping(value: Any, cls: type, what: str) -> dict[str, Any]:
    """A model (written with wire names) or a plain mapping (sent as given)."""
    if isinstance(value, cls):
        data: dict[str, Any] = _LENIENT.unstructure(value)
        return data
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{what} must be a {cls.__name__} or a mapping, got {type(value).__name__}")


def _session_config(value: SessionConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, SessionConfig):
        for name in ("idle_timeout_seconds", "idle_close_delay_seconds", "max_duration_seconds"):
            _seconds(getattr(value, name), f"config.{name}")
    return _model_or_mapping(value, SessionConfig, "config")


def _merge_extra(body: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra is None:
        return body
    if not isinstance(extra, Mapping):
        raise TypeError("extra must be a mapping of additional body fields")
    clash = sorted(set(extra) & set(body))
    if clash:
        raise ValueError(f"extra repeats fields given as arguments: {clash}")
    return {**body, **extra}


def list_sessions(
    *,
    team_id: str | None = None,
    endpoint_type: EndpointType | str | None = None,
    status: SessionStatus | str | None = None,
    limit: int | None = None,
    marker: str | None = None,
) -> Request:
    """``GET /workloads/sessions``: sessions visible to the caller, one page.

    Filters by team, endpoint type (``spark_connect``) and status; ``limit`` is 0..100
    (server default 100); ``marker`` is the previous page's marker.
    """
    params = _params(
        teamId=_opt_id(team_id, "team_id"),
        endpoint_type=_choice(endpoint_type, EndpointType, "endpoint_type"),
        status=_choice(status, SessionStatus, "status"),
        limit=_limit(limit),
        marker=_marker(marker),
    )
    return Request("GET", _SESSIONS, params=params, idempotent=True, operation="list_sessions")


def create_session(
    *,
    endpoint_type: EndpointType | str | None = EndpointType.SPARK_CONNECT,
    name: str | None = None,
    team_id: str | None = None,
    member_id: str | None = None,
    service_account_id: str | None = None,
    notebook_id: str | None = None,
    config: SessionConfig | Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    workload_config_id: str | None = None,
    allow_shared: bool | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Request:
    """``POST /workloads/sessions``: create a session (it starts ``pending``). Not idempotent.

    Which fields the platform requires is not published; only the given ones are sent.
    ``extra`` adds body fields this SDK does not model (it may not repeat a modelled one).
    """
    if allow_shared is not None and not isinstance(allow_shared, bool):
        raise TypeError(f"allow_shared must be True or False, got {type(allow_shared).__name__}")
    body = _params(
        endpointType=_choice(endpoint_type, EndpointType, "endpoint_type"),
        name=_opt_text(name, "name"),
        teamId=_opt_id(team_id, "team_id"),
        memberId=_opt_id(member_id, "member_id"),
        serviceAccountId=_opt_id(service_account_id, "service_account_id"),
        notebookId=_opt_id(notebook_id, "notebook_id"),
        config=None if config is None else _session_config(config),
        metadata=None if metadata is None else _string_map(metadata, "metadata"),
        workloadConfigId=_opt_id(workload_config_id, "workload_config_id"),
        allowShared=allow_shared,
    )
    return Request(
        "POST",
        _SESSIONS,
        body=_merge_extra(body, extra),
        idempotent=False,
        operation="create_session",
    )


def get_session(session_id: str) -> Request:
    """``GET /workloads/sessions/{session}``: one session's details."""
    sid = _path_id(session_id, "session_id")
    return Request("GET", f"{_SESSIONS}/{sid}", idempotent=True, operation="get_session")


def close_session(session_id: str) -> Request:
    """``DELETE /workloads/sessions/{session}``: close the session now. Not retried once sent."""
    sid = _path_id(session_id, "session_id")
    return Request("DELETE", f"{_SESSIONS}/{sid}", idempotent=False, operation="close_session")


def issue_session_token(session_id: str, *, duration_seconds: int | None = None) -> Request:
    """``POST /workloads/sessions/{session}/token``: a short-lived bearer token for the
    session's gRPC proxy (``duration_seconds``: its lifetime; the platform's default if None).
    """
    sid = _path_id(session_id, "session_id")
    body = _params(durationSeconds=_seconds(duration_seconds, "duration_seconds", positive=True))
    return Request(
        "POST",
        f"{_SESSIONS}/{sid}/token",
        body=body,
        idempotent=False,
        operation="issue_session_token",
    )


def relaunch_session(session_id: str) -> Request:
    """``POST /workloads/sessions/{session}/relaunch``: a new session with the same workload
    configuration as a closed or failed one (the server refuses others). Not idempotent."""
    sid = _path_id(session_id, "session_id")
    return Request(
        "POST", f"{_SESSIONS}/{sid}/relaunch", idempotent=False, operation="relaunch_session"
    )


def list_workload_configs(
    *, team_id: str | None = None, limit: int | None = None, marker: str | None = None
) -> Request:
    """``GET /workloads/compute-configs``: named workload configs visible to the caller."""
    params = _params(
        teamId=_opt_id(team_id, "team_id"), limit=_limit(limit), marker=_marker(marker)
    )
    return Request(
        "GET", _CONFIGS, params=params, idempotent=True, operation="list_workload_configs"
    )


def create_workload_config(
    name: str,
    *,
    team_id: str | None = None,
    workload_type: str | None = None,
    cluster_id: str | None = None,
    config: WorkloadSettings | Mapping[str, Any] | None = None,
    endpoint_limits: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Request:
    """``POST /workloads/compute-configs``: a named workload config for a team. Not idempotent.

    ``workload_type``, ``cluster_id`` and ``team_id`` cannot be changed afterwards.
    """
    limits: dict[str, int] | None = None
    if endpoint_limits is not None:
        if not isinstance(endpoint_limits, Mapping):
            raise TypeError("endpoint_limits must be a mapping of endpoint type to a count")
        limits = {}
        for key, number in endpoint_limits.items():
            what = f"endpoint_limits[{key!r}]"
            if not isinstance(key, str):
                raise TypeError(f"{what}: endpoint types are strings")
            limits[key] = count(number, what)
    body = _params(
        name=_text(name, "name"),
        workloadType=_opt_text(workload_type, "workload_type"),
        clusterId=_opt_id(cluster_id, "cluster_id"),
        teamId=_opt_id(team_id, "team_id"),
        config=None if config is None else _model_or_mapping(config, WorkloadSettings, "config"),
        endpointLimits=limits,
    )
    return Request(
        "POST",
        _CONFIGS,
        body=_merge_extra(body, extra),
        idempotent=False,
        operation="create_workload_config",
    )


def get_workload_config(workload_config_id: str) -> Request:
    """``GET /workloads/compute-configs/{workloadConfig}``: one workload config in full."""
    cid = _path_id(workload_config_id, "workload_config_id")
    return Request("GET", f"{_CONFIGS}/{cid}", idempotent=True, operation="get_workload_config")


# --------------------------------------------------------------------------- errors

_MESSAGE_KEYS = ("message", "error", "detail")
_ITEM_KEYS = ("message", "msg", "detail", "error")


def _message_of(value: Any, depth: int = 0) -> tuple[Any, str | None]:
    """(code, message) from one error value: a string, an object, or a list of either."""
    if depth > 3:
        return None, None
    if isinstance(value, str):
        return None, value.strip() or None
    if isinstance(value, Mapping):
        code = value.get("code")
        for key in _MESSAGE_KEYS if depth == 0 else _ITEM_KEYS:
            inner_code, message = _message_of(value.get(key), depth + 1)
            if message:
                return (code if code is not None else inner_code), message
        return code, None
    if isinstance(value, list):
        parts = [m for m in (_message_of(v, depth + 1)[1] for v in value[:5]) if m]
        return None, "; ".join(parts) or None
    return None, None


def _decode(body: bytes | str | None) -> str:
    if body is None:
        return ""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else body


def error_parser(
    status: int, body: bytes | str | None, headers: Any = None
) -> tuple[Any, str] | None:
    """For the transport: ``(code, message)`` of a LakeSail error answer.

    The error format is not published, so any JSON object with a ``message``, ``error`` or
    ``detail`` field is read (a string, a nested object with its own ``message``, or a list
    of those, as validation errors often are); ``code`` is kept when present. A body that is
    not JSON gives its text, unless it is HTML (a proxy's page) or empty: then None, and the
    transport reports the HTTP status with an excerpt.
    """
    del status, headers  # the body alone decides
    text = _decode(body).strip()
    if not text or text.startswith("<"):
        return None
    obj, problem = read_json(text)
    if problem is not None:
        return None, " ".join(text.split())[:200]
    code, message = _message_of(obj)
    if message:
        return code, message
    return code, " ".join(text.split())[:200]


# --------------------------------------------------------------------------- responses


def _expect_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        kind = "null" if data is None else type(data).__name__
        raise ProtocolError(f"could not read {what}: $: expected a JSON object, got {kind}")
    return data


def parse_session(data: Any, *, strict: bool = False, what: str = "session") -> Session:
    """A session object (create, describe and relaunch answers) -> :class:`Session`."""
    session: Session = structure(converter(strict), _expect_object(data, what), Session, what=what)
    return session


@frozen
class _Included:
    sessions: tuple[Session, ...] = ()
    members: tuple[Member, ...] = ()
    service_accounts: tuple[ServiceAccount, ...] = ()
    workloads: tuple[Workload, ...] = ()
    workload_configs: tuple[WorkloadConfig, ...] = ()


@frozen
class _SessionPage:
    total: int | None = None
    items: tuple[SessionRef, ...] = ()
    included: _Included | None = None
    marker: str | None = None


def _joined(ref: SessionRef, session: Session) -> Session:
    """The session with what only its reference carries filled in."""
    changes = {
        name: getattr(ref, name)
        for name in ("compute_instance_id", "member_id", "service_account_id")
        if getattr(session, name) is None and getattr(ref, name) is not None
    }
    return attrs.evolve(session, **changes) if changes else session


def parse_session_list(data: Any, *, strict: bool = False) -> SessionList:
    """A ``GET /workloads/sessions`` page -> :class:`SessionList`, ``items`` joined with
    ``included.sessions`` by id (in the order of ``items``).

    Raises :class:`~aiocompute.ProtocolError` if an item's session is not included.
    """
    what = "session list"
    obj = _expect_object(data, what)
    page: _SessionPage = structure(converter(strict), obj, _SessionPage, what=what)
    included = page.included or _Included()
    by_id: dict[str, Session] = {}
    for session in included.sessions:
        by_id.setdefault(session.id, session)
    sessions = []
    for index, ref in enumerate(page.items):
        found = by_id.get(ref.id)
        if found is None:
            raise ProtocolError(
                f"could not read {what}: $.items[{index}]: session {ref.id!r} is not in "
                f"included.sessions ({len(by_id)} included)"
            )
        sessions.append(_joined(ref, found))
    return SessionList(
        sessions=tuple(sessions),
        refs=page.items,
        total=page.total,
        marker=page.marker or None,
        members=included.members,
        service_accounts=included.service_accounts,
        workloads=included.workloads,
        workload_configs=included.workload_configs,
        raw=obj,
    )


def parse_session_token(data: Any, *, strict: bool = False) -> SessionToken:
    """A token answer ``{"token", "expiresAt"}`` -> :class:`SessionToken`."""
    what = "session token"
    token: SessionToken = structure(
        converter(strict), _expect_object(data, what), SessionToken, what=what
    )
    if not token.token:
        raise ProtocolError(f"could not read {what}: $.token: the token is empty")
    return token


def parse_workload_config(data: Any, *, strict: bool = False) -> WorkloadConfig:
    """A workload config object -> :class:`WorkloadConfig`."""
    what = "workload config"
    config: WorkloadConfig = structure(
        converter(strict), _expect_object(data, what), WorkloadConfig, what=what
    )
    return config


def parse_workload_config_list(data: Any, *, strict: bool = False) -> WorkloadConfigList:
    """A ``GET /workloads/compute-configs`` page -> :class:`WorkloadConfigList`."""
    what = "workload config list"
    page: WorkloadConfigList = structure(
        converter(strict), _expect_object(data, what), WorkloadConfigList, what=what
    )
    return attrs.evolve(page, marker=page.marker or None) if page.marker == "" else page


# --------------------------------------------------------------------------- states


def session_state(session: Session) -> str:
    """A session's status as a plain string (``"unknown"`` if none was sent)."""
    return session.state
