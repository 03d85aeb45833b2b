"""Qiskit Runtime (IBM Quantum Platform) data types.

All models are frozen attrs classes with snake_case attributes, which is also how the API
spells them on the wire. Every model read from the server has a ``raw`` attribute: the JSON
object exactly as sent (unknown keys included); it is not compared, not shown in ``repr``
and never sent.

Enum-typed fields are declared ``SomeEnum | str``: states the reference does not list
(``pending_inactive``, ``pending_closed`` and whatever comes next) stay plain strings.

Timestamps are typed ``datetime | str | None``: a value that reads as a time (ISO-8601, or
epoch milliseconds) becomes a timezone-aware :class:`~datetime.datetime`; anything else is
kept as the text the server sent (the reference's own examples hold the placeholder
``"example"``), so an odd format never makes a session unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from .._core.states import ServerEnum

__all__ = [
    "Job",
    "JobList",
    "JobMetrics",
    "JobProgram",
    "JobState",
    "JobStatus",
    "Session",
    "SessionMode",
    "SessionState",
    "StateTimestamp",
]


class SessionState(ServerEnum):
    """A session's ``state``.

    The reference lists open, active, inactive and closed; the service also reports
    ``pending_inactive`` and ``pending_closed`` (API-NOTES.md). Others may come: they are
    kept as plain strings.
    """

    OPEN = "open"
    ACTIVE = "active"
    INACTIVE = "inactive"
    PENDING_INACTIVE = "pending_inactive"
    PENDING_CLOSED = "pending_closed"
    CLOSED = "closed"


class SessionMode(ServerEnum):
    """How a session runs its jobs: ``batch`` (queued together) or ``dedicated``."""

    BATCH = "batch"
    DEDICATED = "dedicated"


# States in which a session can still take jobs (if it accepts them).
_LIVE = frozenset({"open", "active", "inactive"})


@frozen
class StateTimestamp:
    """One entry of ``timestamps``: when the session entered ``status``."""

    status: SessionState | str
    timestamp: datetime | str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Session:
    """A Qiskit Runtime session (``/v1/sessions/{id}``).

    ``backend_name`` may be None while the session is ``open`` (no backend picked yet);
    ``elapsed_time`` (usage seconds) is None while the session is ongoing. ``accepting_jobs``
    False means the session drains: queued jobs still run, then it closes.
    """

    id: str
    backend_name: str | None = None
    mode: SessionMode | str | None = None
    state: SessionState | str | None = None
    state_reason: str | None = None
    accepting_jobs: bool | None = None
    started_at: datetime | str | None = None
    activated_at: datetime | str | None = None
    closed_at: datetime | str | None = None
    last_job_started: datetime | str | None = None
    last_job_completed: datetime | str | None = None
    interactive_ttl: int | None = None
    max_ttl: int | None = None
    active_ttl: int | None = None
    timestamps: tuple[StateTimestamp, ...] = ()
    user_id: str | None = None
    elapsed_time: float | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def state_name(self) -> str:
        """The raw ``state`` string (``"unknown"`` if the server sent none)."""
        if self.state is None:
            return "unknown"
        return self.state.value if isinstance(self.state, SessionState) else self.state

    @property
    def draining(self) -> bool:
        """Still open, active or inactive, but no longer accepting jobs: it will close
        once its queued jobs have run."""
        return self.state_name in _LIVE and self.accepting_jobs is False

    @property
    def effective_state(self) -> str:
        """The state waits decide on: ``state``, refined by ``accepting_jobs``.

        A draining session (see :attr:`draining`) is heading for ``closed`` whatever its
        state says, which is what ``pending_closed`` means; so it counts as that.
        """
        return "pending_closed" if self.draining else self.state_name

    @property
    def is_closed(self) -> bool:
        """The session is closed for good."""
        return self.state_name == "closed"

    @property
    def ready(self) -> bool:
        """Active and accepting jobs: the session has priority on its backend."""
        return self.state_name == "active" and self.accepting_jobs is not False


# --------------------------------------------------------------------------- jobs


class JobStatus(ServerEnum):
    """A job's ``status`` (and ``state.status``), as the service spells it.

    ``Queued`` and ``Running`` are on the way; ``Completed``, ``Failed`` and ``Cancelled``
    are final. IBM's own client compares them upper-cased, and the service has also
    reported ``"Cancelled - Ran too long"`` (see :attr:`Job.status_name`); other spellings
    are kept as plain strings.
    """

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


@frozen
class JobState:
    """A job's ``state``: its ``status`` and, for a failed or cancelled job, why
    (``reason``, with the service's numeric ``reason_code`` and a ``reason_solution``
    when it gives them)."""

    status: JobStatus | str | None = None
    reason: str | None = None
    reason_code: int | None = None
    reason_solution: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class JobProgram:
    """The primitive a job runs (``program.id``: ``"sampler"`` or ``"estimator"``)."""

    id: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


# Final statuses, normalized (see Job.status_name).
_JOB_FINAL = frozenset({"completed", "failed", "cancelled", "cancelled - ran too long"})


@frozen
class Job:
    """A Qiskit Runtime job (``/v1/jobs/{id}``): one primitive run on a backend.

    ``status`` is the top-level status and ``state`` holds it again with the reason of a
    failure or cancellation; :attr:`status_name` picks whichever the server sent.
    ``params`` (the primitive's input) is None unless asked for (lists and reads leave it
    out by default, and a private job never returns it). ``usage`` is the service's usage
    object (e.g. ``{"seconds": 2, "quantum_seconds": 2}``), kept as it came.

    A job returned by :meth:`~aiocompute.qiskit.JobsResource.run` holds what the create
    answered (``id``, ``backend``, ``session_id``, ``private``) plus the program and tags
    that were sent; its ``status`` is None until it is read again.
    """

    id: str
    backend: str | None = None
    status: JobStatus | str | None = None
    state: JobState | None = None
    program: JobProgram | None = None
    created: datetime | str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    private: bool | None = None
    cost: int | None = None
    runtime: str | None = None
    user_id: str | None = None
    usage: Mapping[str, Any] | None = None
    estimated_running_time_seconds: float | None = None
    params: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def status_name(self) -> str:
        """The status as the server wrote it: ``state.status`` if there is one, else
        ``status`` (``"unknown"`` if neither)."""
        for value in (self.state.status if self.state is not None else None, self.status):
            if value is not None:
                return value.value if isinstance(value, JobStatus) else value
        return "unknown"

    @property
    def reason(self) -> str | None:
        """Why the job failed or was cancelled (``state.reason``), if the server said."""
        return self.state.reason if self.state is not None else None

    @property
    def program_id(self) -> str | None:
        """``program.id``: the primitive (``"sampler"``, ``"estimator"``)."""
        return self.program.id if self.program is not None else None

    @property
    def done(self) -> bool:
        """Whether the job is in a final state (completed, failed or cancelled)."""
        return self.status_name.lower() in _JOB_FINAL

    @property
    def completed(self) -> bool:
        """Whether the job completed (its results can be read)."""
        return self.status_name.lower() == "completed"


@frozen
class JobList:
    """One page of ``GET /v1/jobs``: the ``jobs``, how many match in all (``count``),
    and the ``limit`` / ``offset`` the page was read with."""

    jobs: tuple[Job, ...] = ()
    count: int | None = None
    limit: int | None = None
    offset: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def next_offset(self) -> int | None:
        """The ``offset`` of the next page, or None if this is the last one."""
        start = self.offset or 0
        end = start + len(self.jobs)
        if not self.jobs or self.count is None or end >= self.count:
            return None
        return end


@frozen
class JobMetrics:
    """``GET /v1/jobs/{id}/metrics``: when the job was created, started and finished
    (``timestamps``), its ``usage`` (``quantum_seconds``, ``seconds``), and while it waits
    its queue position and estimated times. Every value is kept as the service sent it;
    the whole object is in ``raw``."""

    timestamps: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None
    bss: Mapping[str, Any] | None = None
    executions: int | None = None
    num_circuits: int | None = None
    num_qubits: tuple[int, ...] | None = None
    circuit_depths: tuple[int, ...] | None = None
    qiskit_version: str | None = None
    estimated_start_time: datetime | str | None = None
    estimated_completion_time: datetime | str | None = None
    position_in_queue: int | None = None
    position_in_provider: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def quantum_seconds(self) -> float | None:
        """``usage.quantum_seconds``, if present and a number."""
        value = (self.usage or {}).get("quantum_seconds")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
