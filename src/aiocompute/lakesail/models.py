"""LakeSail platform workloads: data types.

All models are frozen attrs classes with snake_case attributes; the wire is camelCase, mapped
by the LakeSail converter in :mod:`aiocompute.lakesail._protocol`, never here.

Every model read from the server has a ``raw`` attribute: the JSON object exactly as the
server sent it, unknown keys included. It is not compared, not shown in ``repr`` and never
sent. Enum-typed fields are declared ``SomeEnum | str`` so that a value this SDK does not know
yet (a new session status, a new endpoint type) stays a plain string instead of failing.

Timestamps are typed ``datetime | str | None``: the reference only says "string", so a value
that reads as ISO-8601 (or epoch milliseconds) becomes a timezone-aware
:class:`~datetime.datetime`, and anything else is kept as the string the server sent.

The models used in requests (:class:`SessionConfig`, :class:`WorkloadSettings` and what it
contains) default every field to None: unset fields are not sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from .._core.states import ServerEnum

__all__ = [
    "ComputeSpec",
    "ConnectionInfo",
    "DriverSpec",
    "EbsConfig",
    "EndpointType",
    "Library",
    "Member",
    "PypiLibrary",
    "RequirementsLibrary",
    "SailConfig",
    "ServiceAccount",
    "Session",
    "SessionConfig",
    "SessionList",
    "SessionRef",
    "SessionStatus",
    "SessionToken",
    "WorkerSpec",
    "Workload",
    "WorkloadConfig",
    "WorkloadConfigList",
    "WorkloadSettings",
]


# --------------------------------------------------------------------------- enums


class SessionStatus(ServerEnum):
    """A session's ``status``.

    ``pending`` until its compute is ready (on the real platform: until the first proxy
    request after that), then ``active`` / ``idle``; ``closed`` and ``failed`` are final.
    """

    PENDING = "pending"
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"
    FAILED = "failed"


class EndpointType(ServerEnum):
    """The kind of endpoint a session serves (the reference lists only Spark Connect)."""

    SPARK_CONNECT = "spark_connect"


_TERMINAL = frozenset({"closed", "failed"})
_READY = frozenset({"active", "idle"})


def _text(value: enum.Enum | str | None) -> str | None:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return value


# --------------------------------------------------------------------------- sessions


@frozen
class ConnectionInfo:
    """How to reach a session (sent to its owner only): the proxy authentication URL of
    HTTP-transport endpoints, or the gRPC endpoint of gRPC-transport ones."""

    proxy_auth_url: str | None = None
    grpc_endpoint: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SessionConfig:
    """Lifetime settings of a session, in seconds (``0`` or unset: the platform's default)."""

    idle_timeout_seconds: int | None = None
    idle_close_delay_seconds: int | None = None
    max_duration_seconds: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Session:
    """A LakeSail workload session (an interactive compute session, e.g. Spark Connect).

    ``status`` is a :class:`SessionStatus` or, if unknown, the raw string; :attr:`state`
    always gives the plain string. ``connection_info`` is only sent to the session's owner.
    ``compute_instance_id`` is not part of the session object: it is filled from the
    reference that list pages carry next to each session (None for a session read alone).
    """

    id: str
    endpoint_type: EndpointType | str | None = None
    name: str | None = None
    status: SessionStatus | str | None = None
    workload_id: str | None = None
    team_id: str | None = None
    member_id: str | None = None
    service_account_id: str | None = None
    notebook_id: str | None = None
    termination_reason: str | None = None
    status_message: str | None = None
    connection_info: ConnectionInfo | None = None
    last_activity_at: datetime | str | None = None
    idle_since: datetime | str | None = None
    closed_at: datetime | str | None = None
    timeout_at: datetime | str | None = None
    config: SessionConfig | None = None
    metadata: Mapping[str, Any] = field(factory=dict)
    created_at: datetime | str | None = None
    updated_at: datetime | str | None = None
    compute_instance_id: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def state(self) -> str:
        """The status as a plain string (``"unknown"`` if the server sent none)."""
        return _text(self.status) or "unknown"

    @property
    def is_terminal(self) -> bool:
        """Closed or failed: the session will not run again (:meth:`relaunch` makes a new one)."""
        return self.state in _TERMINAL

    @property
    def is_ready(self) -> bool:
        """Active or idle: its compute is up and it accepts connections."""
        return self.state in _READY


@frozen
class SessionRef:
    """One entry of a session list's ``items``: ids only; the session itself is side-loaded
    in ``included.sessions``."""

    id: str
    compute_instance_id: str | None = None
    member_id: str | None = None
    service_account_id: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SessionToken:
    """A short-lived bearer token (a signed JWT) for the session's gRPC proxy.

    Dial the session's ``connection_info.grpc_endpoint`` and send
    ``Authorization: Bearer <token>`` in the gRPC metadata. The token is a credential: it is
    left out of ``repr``.
    """

    token: str = field(repr=False)
    expires_at: datetime | str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- side-loaded


@frozen
class Member:
    """An organization member (side-loaded in session lists)."""

    id: str
    organization_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    email: str | None = None
    preferences: Mapping[str, Any] = field(factory=dict)
    invited_by_member_id: str | None = None
    invite_expires_at: datetime | str | None = None
    invite_accepted_at: datetime | str | None = None
    last_login_at: datetime | str | None = None
    last_active_at: datetime | str | None = None
    is_enabled: bool | None = None
    account_type: str | None = None
    created_at: datetime | str | None = None
    created_by: str | None = None
    updated_at: datetime | str | None = None
    updated_by: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ServiceAccount:
    """A service account (side-loaded in session lists); its keys authenticate like tokens."""

    id: str
    username: str | None = None
    description: str | None = None
    created_at: datetime | str | None = None
    created_by: str | None = None
    updated_at: datetime | str | None = None
    updated_by: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Workload:
    """The compute instance behind one or more sessions (side-loaded in session lists)."""

    id: str
    workload_config_id: str | None = None
    infra_status: str | None = None
    shutdown_policy: str | None = None
    endpoints: Mapping[str, Any] = field(factory=dict)
    provisioned_at: datetime | str | None = None
    cleaned_at: datetime | str | None = None
    last_activity_at: datetime | str | None = None
    status_message: str | None = None
    created_at: datetime | str | None = None
    created_by: str | None = None
    updated_at: datetime | str | None = None
    updated_by: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- workload configs


@frozen
class EbsConfig:
    """The EBS volume of a node."""

    volume_type: str | None = None
    volume_size: int | None = None
    iops: int | None = None
    throughput: int | None = None
    delete_on_termination: bool | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class DriverSpec:
    """The driver node of a Sail cluster."""

    instance_type: str | None = None
    ebs_config: EbsConfig | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WorkerSpec:
    """The worker nodes of a Sail cluster (``capacity_type`` e.g. ``"on-demand"``)."""

    instance_type: str | None = None
    ebs_config: EbsConfig | None = None
    max_nodes: int | None = None
    capacity_type: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ComputeSpec:
    """Driver and worker nodes."""

    driver: DriverSpec | None = None
    worker: WorkerSpec | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class PypiLibrary:
    """A package installed from PyPI (or the index ``repo``)."""

    package: str | None = None
    repo: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class RequirementsLibrary:
    """A requirements file to install from."""

    source: str | None = None
    uri: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Library:
    """A library installed on the cluster: a PyPI package, a requirements file or a wheel."""

    pypi: PypiLibrary | None = None
    requirements: RequirementsLibrary | None = None
    whl: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SailConfig:
    """Settings of a Sail workload (``execution_mode`` e.g. ``"standalone"``)."""

    execution_mode: str | None = None
    compute: ComputeSpec | None = None
    lakesail_image_uri: str | None = None
    libraries: tuple[Library, ...] | None = None
    extra_env: Mapping[str, str] | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WorkloadSettings:
    """The ``config`` of a workload config (only Sail workloads are documented)."""

    sail: SailConfig | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WorkloadConfig:
    """A named, reusable compute configuration of a team (``/workloads/compute-configs``).

    ``workload_type``, ``cluster_id`` and ``team_id`` cannot change once created.
    ``endpoint_limits`` caps the endpoints per type (``{"spark_connect": 2}``).
    """

    id: str
    name: str | None = None
    workload_type: str | None = None
    cluster_id: str | None = None
    team_id: str | None = None
    config: WorkloadSettings | None = None
    endpoint_limits: Mapping[str, int] = field(factory=dict)
    created_at: datetime | str | None = None
    created_by: str | None = None
    updated_at: datetime | str | None = None
    updated_by: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- pages


def _find(items: tuple[Any, ...], wanted: str) -> Any:
    for item in items:
        if item.id == wanted:
            return item
    return None


@frozen
class SessionList:
    """One page of ``GET /workloads/sessions``, with the references already joined.

    ``sessions`` are the full session objects in the order of the page's ``items`` (each
    with ``compute_instance_id`` from its reference); ``refs`` are those items as sent.
    ``members``, ``service_accounts``, ``workloads`` and ``workload_configs`` are the other
    side-loaded objects. ``total`` counts every matching session (all pages); ``marker`` is
    the next page's marker, None on the last page.
    """

    sessions: tuple[Session, ...] = ()
    refs: tuple[SessionRef, ...] = ()
    total: int | None = None
    marker: str | None = None
    members: tuple[Member, ...] = ()
    service_accounts: tuple[ServiceAccount, ...] = ()
    workloads: tuple[Workload, ...] = ()
    workload_configs: tuple[WorkloadConfig, ...] = ()
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    def session(self, session_id: str) -> Session | None:
        """The session with this id on this page, or None."""
        found: Session | None = _find(self.sessions, session_id)
        return found

    def member(self, member_id: str) -> Member | None:
        """The side-loaded member with this id, or None."""
        found: Member | None = _find(self.members, member_id)
        return found

    def service_account(self, account_id: str) -> ServiceAccount | None:
        """The side-loaded service account with this id, or None."""
        found: ServiceAccount | None = _find(self.service_accounts, account_id)
        return found

    def workload(self, workload_id: str) -> Workload | None:
        """The side-loaded workload (compute instance) with this id, or None."""
        found: Workload | None = _find(self.workloads, workload_id)
        return found

    def workload_config(self, config_id: str) -> WorkloadConfig | None:
        """The side-loaded workload config with this id, or None."""
        found: WorkloadConfig | None = _find(self.workload_configs, config_id)
        return found


@frozen
class WorkloadConfigList:
    """One page of ``GET /workloads/compute-configs``: full objects in ``items``, no
    side-loading; ``marker`` is None on the last page."""

    items: tuple[WorkloadConfig, ...] = ()
    marker: str | None = None
    total: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)
