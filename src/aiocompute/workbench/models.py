"""Posit Workbench data types.

All models are frozen attrs classes with snake_case attributes. Wire names (sessions are
snake_case on the wire, jobs and users camelCase) are mapped by the Workbench converter in
:mod:`aiocompute.workbench._protocol`, not here.

Every model read from the server has a ``raw`` attribute: the JSON object exactly as the
server sent it (unknown keys included). It is not compared, not shown in ``repr`` and never
sent. Enum-typed fields are declared ``SomeEnum | str``: a value this SDK does not know yet
stays a plain string instead of failing.

Timestamps are timezone-aware :class:`~datetime.datetime` values, whether the server sent
epoch milliseconds (live sessions) or ISO-8601 strings (jobs, historical sessions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from .._core.states import ServerEnum

__all__ = [
    "AuditEnvironment",
    "AuditedJob",
    "AuditedJobDetails",
    "ClusterWorkbenchSupport",
    "ComputeEnv",
    "ComputeEnvironments",
    "Container",
    "EnvironmentVariable",
    "Job",
    "JobConfig",
    "JobOutput",
    "JobSpec",
    "JobStatus",
    "LaunchParameters",
    "LaunchedSession",
    "ListedSessions",
    "OutputChunk",
    "OutputLine",
    "PlacementConstraint",
    "ResourceLimit",
    "ScriptOutput",
    "ServerVersion",
    "Session",
    "SessionHook",
    "SessionListing",
    "SessionState",
    "User",
    "UserDefinedData",
    "WorkbenchIDEInfo",
    "WorkbenchLanguage",
]


# --------------------------------------------------------------------------- enums


class SessionState(ServerEnum):
    """A session's ``activity_state``.

    The reference lists launching, pending, starting, running, suspended, finished, failed,
    killed and suspending; real servers also report the others below.
    """

    LAUNCHING = "launching"
    RESUMING = "resuming"
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    SAVED = "saved"
    SHUTTING_DOWN = "shutting_down"
    QUITTING = "quitting"
    DESTROY_PENDING = "destroy_pending"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"
    CANCELED = "canceled"
    ENDED = "ended"


class JobStatus(ServerEnum):
    """A job's ``status`` (capitalised on the wire)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    FINISHED = "Finished"
    FAILED = "Failed"
    KILLED = "Killed"
    CANCELED = "Canceled"


_JOB_TERMINAL = frozenset({"Finished", "Failed", "Killed", "Canceled"})


# --------------------------------------------------------------------------- small types


def _tuple_of_str(value: Iterable[str]) -> tuple[str, ...]:
    """Accept any iterable of strings, but not a lone string (which would split)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected a sequence of strings, got a single string {value!r}")
    return tuple(value)


def _to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


@frozen
class PlacementConstraint:
    """A name/value pair that selects a launch option defined in the server configuration."""

    name: str
    value: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ResourceLimit:
    """A resource limit (memory, cpu, gpus...).

    The current reference uses ``type``/``value``/``max_value``/``default_value``; the
    older preview used ``name``/``value``/``valueType``. Both shapes are read.
    """

    type: str | None = None
    value: str | None = None
    max_value: str | None = None
    default_value: str | None = None
    name: str | None = None
    value_type: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class EnvironmentVariable:
    """An environment variable given to a session or a job."""

    name: str
    value: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SessionHook:
    """A hook run when a session starts or stops."""

    exe: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Container:
    """The container a job runs in."""

    image: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class JobConfig:
    """A launcher configuration entry of a compute environment or a job."""

    name: str | None = None
    value: str | None = None
    value_type: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class LaunchParameters:
    """Launcher parameters of a session.

    ``name`` and ``cluster`` are required when launching or resuming (checked before
    sending); sessions read back from the server may lack them (historical sessions do).
    """

    name: str | None = None
    cluster: str | None = None
    container_image: str | None = None
    container_images: tuple[str, ...] | None = None
    placement_constraints: tuple[PlacementConstraint, ...] = field(default=(), converter=_to_tuple)
    resource_limits: tuple[ResourceLimit, ...] = field(default=(), converter=_to_tuple)
    queues: tuple[str, ...] = field(default=(), converter=_tuple_of_str)
    default_image: str | None = None
    resource_profile: str | None = None
    aws_role_arn: str | None = None
    databricks_instance: str | None = None
    snowflake_account: str | None = None
    snowflake_role: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- server, users


@frozen
class ServerVersion:
    """The server's version and enabled features.

    The wire shape is ``{"version": {major, minor, patch, ...}, "features": [...]}``;
    ``raw`` holds that whole object.
    """

    major: int | None = None
    minor: int | None = None
    patch: int | None = None
    build_number: str | None = None
    release_name: str | None = None
    build_type: str | None = None
    features: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def number(self) -> tuple[int, int, int]:
        """``(major, minor, patch)`` for comparisons; missing parts count as 0."""
        return (self.major or 0, self.minor or 0, self.patch or 0)

    def has_feature(self, name: str) -> bool:
        """Whether ``name`` is among the enabled features."""
        return name in self.features


@frozen
class User:
    """A user registered in Workbench (``WorkbenchUser``)."""

    username: str
    status: str | None = None
    is_admin: bool | None = None
    is_super_admin: bool | None = None
    uid: int | None = None
    last_sign_in: datetime | None = None
    created: datetime | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- compute envs


@frozen
class ClusterWorkbenchSupport:
    """What a compute environment supports for one IDE."""

    supports_interactive_sessions: bool | None = None
    supports_adhoc_jobs: bool | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ComputeEnv:
    """A compute environment (cluster) sessions and jobs can run in.

    ``resource_profiles`` is kept as the server sends it (its shape is not documented).
    """

    name: str
    type: str | None = None
    supports_containers: bool | None = None
    queues: tuple[str, ...] = ()
    config: tuple[JobConfig, ...] = ()
    resource_limits: tuple[ResourceLimit, ...] = ()
    placement_constraints: tuple[PlacementConstraint, ...] = ()
    resource_profiles: tuple[Any, ...] = ()
    images: tuple[str, ...] = ()
    workbenches: Mapping[str, ClusterWorkbenchSupport] = field(factory=dict)
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WorkbenchLanguage:
    """The language runtime behind an IDE and whether it is available."""

    name: str
    available: bool
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WorkbenchIDEInfo:
    """Defaults for one supported IDE."""

    default_cluster: str | None = None
    default_image: str | None = None
    lang: WorkbenchLanguage | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ComputeEnvironments:
    """The result of ``get_compute_envs``: clusters and supported IDEs by name."""

    clusters: tuple[ComputeEnv, ...] = ()
    workbenches: Mapping[str, WorkbenchIDEInfo] = field(factory=dict)
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    def cluster(self, name: str) -> ComputeEnv | None:
        """The cluster called ``name``, or None."""
        for env in self.clusters:
            if env.name == name:
                return env
        return None


# --------------------------------------------------------------------------- jobs


@frozen
class Job:
    """A Workbench job (``WorkbenchJob``), as reported by the server.

    ``container`` is a :class:`Container` for live jobs but may be a plain string (``""``)
    in historical sessions. ``status`` is a :class:`JobStatus` or, if unknown, the raw string.
    A ``Finished`` job with a non-zero ``exit_code`` counts as failed.
    """

    id: str
    name: str | None = None
    cluster: str | None = None
    user: str | None = None
    group: str | None = None
    exe: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    stdin: str | None = None
    working_directory: str | None = None
    environment: tuple[EnvironmentVariable, ...] = ()
    queues: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    container: Container | str | None = None
    host: str | None = None
    status: JobStatus | str | None = None
    status_message: str | None = None
    status_code: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    placement_constraints: tuple[PlacementConstraint, ...] = ()
    resource_limits: tuple[ResourceLimit, ...] = ()
    resource_profile: str | None = None
    exposed_ports: tuple[Any, ...] = ()
    mounts: tuple[Any, ...] = ()
    config: tuple[JobConfig, ...] = ()
    metadata: Mapping[str, Any] = field(factory=dict)
    submission_time: datetime | None = None
    last_update_time: datetime | None = None
    terminated_time: datetime | None = None
    running_timestamp: datetime | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def state(self) -> str:
        """The raw status string (``"unknown"`` if the server sent none)."""
        if self.status is None:
            return "unknown"
        return self.status.value if isinstance(self.status, JobStatus) else self.status

    @property
    def container_image(self) -> str | None:
        """The image name, whichever shape ``container`` came in (None if empty)."""
        if isinstance(self.container, Container):
            return self.container.image or None
        return self.container or None

    @property
    def is_terminal(self) -> bool:
        """The job has ended (Finished, Failed, Killed or Canceled)."""
        return self.state in _JOB_TERMINAL

    @property
    def succeeded(self) -> bool:
        """Finished with exit code 0 (or no exit code reported)."""
        return self.state == "Finished" and self.exit_code in (None, 0)

    @property
    def failed(self) -> bool:
        """Ended without success: Failed, Killed, Canceled, or Finished with exit code != 0."""
        return self.is_terminal and not self.succeeded


@frozen
class AuditedJob(Job):
    """A Workbench audited job (``WorkbenchAuditedJob``): same shape as :class:`Job`."""


def _env_list(
    value: Mapping[str, str] | Iterable[EnvironmentVariable] | None,
) -> tuple[EnvironmentVariable, ...] | None:
    """``{"A": "1"}`` or ``[EnvironmentVariable(...)]`` -> a tuple of EnvironmentVariable."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return tuple(EnvironmentVariable(str(k), str(v)) for k, v in value.items())
    out = tuple(value)
    for item in out:
        if not isinstance(item, EnvironmentVariable):
            raise TypeError(
                f"environment entries must be EnvironmentVariable, got {type(item).__name__}"
            )
    return out


def _opt_str_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _tuple_of_str(value)


def _opt_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@frozen(kw_only=True)
class JobSpec:
    """What to launch as a job (``launch_job`` / ``launch_audited_job``).

    ``name``, ``cluster`` and one of ``exe`` / ``command`` are required (checked before
    sending). ``container_image`` is a shorthand for ``container=Container(image)``.
    ``environment`` takes a mapping or EnvironmentVariable items. ``user`` launches for
    another user (super-admin token needed). ``extra`` adds job properties this SDK does not
    model; it may not repeat a modelled one.
    """

    name: str
    cluster: str
    exe: str | None = None
    command: str | None = None
    args: tuple[str, ...] | None = field(default=None, converter=_opt_str_tuple)
    working_directory: str | None = None
    environment: tuple[EnvironmentVariable, ...] | None = field(default=None, converter=_env_list)
    tags: tuple[str, ...] | None = field(default=None, converter=_opt_str_tuple)
    container: Container | None = None
    container_image: str | None = None
    resource_limits: tuple[ResourceLimit, ...] | None = field(default=None, converter=_opt_tuple)
    queues: tuple[str, ...] | None = field(default=None, converter=_opt_str_tuple)
    placement_constraints: tuple[PlacementConstraint, ...] | None = field(
        default=None, converter=_opt_tuple
    )
    user: str | None = None
    extra: Mapping[str, Any] = field(factory=dict)


@frozen
class OutputChunk:
    """One piece of a job's output stream.

    ``output_type`` is ``"stdout"`` or ``"stderr"`` (kept as sent if something else);
    ``output_source`` is set for audited jobs (e.g. ``"job_launcher"``,
    ``"audit_details_store"``).
    """

    job_id: str
    output_type: str
    output: str
    output_source: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class OutputLine:
    """One line of a job's output (without its newline), from ``jobs.lines()``."""

    job_id: str
    output_type: str
    text: str


@frozen
class JobOutput:
    """A job's whole output, from ``jobs.collect()``: ``stdout`` and ``stderr`` apart, and
    the ``chunks`` in the order they came."""

    job_id: str
    stdout: str
    stderr: str
    chunks: tuple[OutputChunk, ...] = ()

    @classmethod
    def from_chunks(cls, job_id: str, chunks: Iterable[OutputChunk]) -> JobOutput:
        """Join chunks by output type (anything not ``stderr`` counts as stdout)."""
        kept = tuple(chunks)
        out = "".join(c.output for c in kept if c.output_type != "stderr")
        err = "".join(c.output for c in kept if c.output_type == "stderr")
        return cls(job_id, out, err, kept)


@frozen
class UserDefinedData:
    """A user-defined file recorded with an audited job."""

    file_name: str | None = None
    file_contents: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class ScriptOutput:
    """The script part of an audited job's details."""

    checksum: str | None = None
    user_defined_data: tuple[UserDefinedData, ...] = ()
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class AuditEnvironment:
    """The environment part of an audited job's details."""

    summary: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class AuditedJobDetails:
    """The auditing details of a completed audited job."""

    script_output: ScriptOutput | None = None
    environment: AuditEnvironment | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------- sessions


@frozen
class LaunchedSession:
    """The answer of ``launch_session`` / ``resume_session``.

    ``url`` starts with ``/``: join it to the server's address to open the session.
    """

    id: str
    url: str | None = None
    project_id: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Session:
    """A Workbench session (``WorkbenchSession``).

    Live sessions (``get_session``) carry ``activity_state`` and epoch-ms timestamps;
    historical ones (``get_historical_session``) carry ``username``, ISO timestamps and the
    ``job`` that ran the session.
    """

    id: str
    name: str | None = None
    username: str | None = None
    url: str | None = None
    workbench: str | None = None
    launch_parameters: LaunchParameters | None = None
    activity_state: SessionState | str | None = None
    status_detail: str | None = None
    created: datetime | None = None
    last_used: datetime | None = None
    last_state_updated: datetime | None = None
    label: str | None = None
    display_name: str | None = None
    project: str | None = None
    project_id: str | None = None
    working_dir: str | None = None
    running: bool | None = None
    executing: bool | None = None
    save_prompt_required: bool | None = None
    r_version: str | None = None
    r_version_label: str | None = None
    r_version_home: str | None = None
    suspend_size: int | None = None
    job: Job | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SessionListing:
    """The answer of ``get_session`` / ``get_historical_session``: sessions and jobs."""

    sessions: tuple[Session, ...] = ()
    jobs: tuple[Job, ...] = ()
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    def __iter__(self) -> Iterator[Session]:
        """Iterating a listing iterates its sessions."""
        return iter(self.sessions)

    def __len__(self) -> int:
        """How many sessions."""
        return len(self.sessions)

    def session(self, session_id: str) -> Session | None:
        """The session with this id, or None."""
        for s in self.sessions:
            if s.id == session_id:
                return s
        return None

    def job(self, job_id: str) -> Job | None:
        """The job with this id (in ``jobs`` or as a session's ``job``), or None."""
        for j in self.jobs:
            if j.id == job_id:
                return j
        for s in self.sessions:
            if s.job is not None and s.job.id == job_id:
                return s.job
        return None


class ListedSessions(list[Session]):
    """What ``await wb.sessions.list()`` gives: the sessions, as a list, that also keeps
    what the listing said besides (:attr:`jobs` when asked with ``include_jobs``,
    :attr:`listing` whole), so code written for :class:`SessionListing` keeps working.
    """

    def __init__(self, listing: SessionListing) -> None:
        super().__init__(listing.sessions)
        self.listing = listing

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The sessions (as in :attr:`SessionListing.sessions`)."""
        return self.listing.sessions

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs the listing carried (``include_jobs``)."""
        return self.listing.jobs

    @property
    def raw(self) -> Mapping[str, Any]:
        """The answer as sent."""
        return self.listing.raw

    def session(self, session_id: str) -> Session | None:
        """The session with this id, or None."""
        return self.listing.session(session_id)

    def job(self, job_id: str) -> Job | None:
        """The job with this id (in ``jobs`` or as a session's ``job``), or None."""
        return self.listing.job(job_id)
