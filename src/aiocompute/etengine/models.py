"""ET Engine data types: batches, their status counts, and their jobs.

All models are frozen attrs classes with snake_case attributes, as on the wire. Every
model read from the server has a ``raw`` attribute holding the JSON object as sent.

Job statuses mirror AWS Batch and come in either case (``RUNNING`` or ``running``);
:class:`JobStatus` matches them case-insensitively and unknown ones (``SUBMITTING`` has been
seen) stay plain strings. Times are ``datetime | str | None``: epoch milliseconds (what AWS
Batch reports) or ISO-8601 become timezone-aware datetimes, an empty string is None, and
anything else is kept as sent (the reference's examples say ``"string"``).

A batch's state is not sent: it is derived from the status counts, see
:attr:`BatchStatus.state`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from .._core.checks import count
from .._core.states import ServerEnum

__all__ = [
    "ACTIVE_PHASES",
    "Batch",
    "BatchHardware",
    "BatchJob",
    "BatchStatus",
    "Filesystem",
    "Hardware",
    "JobArgument",
    "JobHardware",
    "JobStatus",
    "SubmittedBatch",
    "Tool",
]


class JobStatus(ServerEnum):
    """A job's status (AWS Batch's names), matched case-insensitively."""

    SUBMITTED = "submitted"
    PENDING = "pending"
    RUNNABLE = "runnable"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def _missing_(cls, value: object) -> JobStatus | None:
        # "RUNNING" and "Running" are the same status as "running". Looked up by value, not
        # by a loop over the members: the service sends upper case, so every job read
        # comes here (the loop was about a quarter of parse_job's time).
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered != value:  # (else cls(lowered) would come back here)
                try:
                    return cls(lowered)
                except ValueError:
                    return None
        return None


#: Unfinished job phases, in the order a job goes through them.
ACTIVE_PHASES = ("submitted", "pending", "runnable", "starting", "running")
_DONE = ("succeeded", "failed")
_KNOWN = frozenset(ACTIVE_PHASES + _DONE)
# Keys of a batch description that are not status counts.
_NOT_COUNTS = frozenset({"batch_id", "n_jobs", "n_submitted", "tool_id", "hardware"})


@frozen
class Tool:
    """The tool a batch (or job) runs."""

    tool_id: str | None = None
    tool_name: str | None = None
    tool_description: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Filesystem:
    """A filesystem mounted into a batch's jobs."""

    filesystem_id: str | None = None
    filesystem_name: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class BatchHardware:
    """The hardware of a batch as listed: ``filesystem_list`` objects (the reference) or
    plain ``filesystems`` ids (older servers), CPUs and memory (MB)."""

    filesystem_list: tuple[Filesystem, ...] = ()
    filesystems: tuple[str, ...] = ()
    cpu: int | None = None
    memory: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def filesystem_ids(self) -> tuple[str, ...]:
        """Every filesystem id, whichever shape the server used."""
        ids = [f.filesystem_id for f in self.filesystem_list if f.filesystem_id]
        return tuple(ids) + tuple(f for f in self.filesystems if f not in ids)


@frozen
class Batch:
    """A batch from ``GET /batches``.

    The reference nests the tool (``batch_tool``); older servers send a bare ``tool_id``.
    :attr:`tool` gives the id either way.
    """

    batch_id: str
    batch_tool: Tool | None = None
    tool_id: str | None = None
    n_jobs: int | None = None
    hardware: BatchHardware | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def id(self) -> str:
        """The batch's id (``batch_id``): every model has ``.id``."""
        return self.batch_id

    @property
    def tool(self) -> str | None:
        """The tool's id."""
        if self.batch_tool is not None and self.batch_tool.tool_id:
            return self.batch_tool.tool_id
        return self.tool_id


@frozen
class SubmittedBatch:
    """What ``POST /tools/<tool_id>`` gave back.

    ``batch_id`` is None when the server answered with an empty body (which means success,
    but names nothing: find the batch with ``batches.list()``). ``n_jobs`` is computed as
    the server does: ``max(1, len(variable_args))``.
    """

    batch_id: str | None
    tool_id: str
    n_jobs: int

    @property
    def id(self) -> str | None:
        """The batch's id (``batch_id``; None if the server named none)."""
        return self.batch_id


@frozen
class BatchStatus:
    """How many of a batch's jobs are in each status (``GET /batches/<batch_id>``).

    ``batch_id`` and ``n_jobs`` are filled by the client when the server does not send them.
    Counts of statuses the SDK does not know (``submitting``...) are in :attr:`other`.

    The batch's :attr:`state`, derived from the counts:

    - while any job is unfinished: the furthest phase any unfinished job has reached, in
      the order submitted < pending < runnable < starting < running (a job the server has
      not registered yet, when ``n_jobs`` exceeds the counts, is ``submitted``; a job in an
      unknown status counts as that status, which only matters when it is the only one);
    - when every job has finished: ``"succeeded"`` if none failed, else ``"failed"``.

    A batch with no counts at all (just created) is ``submitted``, never finished.
    """

    submitted: int = 0
    pending: int = 0
    runnable: int = 0
    starting: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    batch_id: str | None = None
    n_jobs: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def id(self) -> str | None:
        """The batch's id (``batch_id``)."""
        return self.batch_id

    @property
    def other(self) -> dict[str, int]:
        """Counts of unknown statuses, by lower-case name."""
        # The counts sit at the top level (the reference) or under "submitted_jobs".
        nested = self.raw.get("submitted_jobs")
        source = nested if isinstance(nested, Mapping) else self.raw
        out: dict[str, int] = {}
        for key, value in source.items():
            name = str(key).lower()
            if (
                name not in _KNOWN
                and name not in _NOT_COUNTS
                and isinstance(value, int)
                and not isinstance(value, bool)
                and value > 0
            ):
                out[name] = out.get(name, 0) + value
        return out

    @property
    def counts(self) -> dict[str, int]:
        """Every status with its count (known ones first, unknown ones included)."""
        known = {name: getattr(self, name) for name in ACTIVE_PHASES + _DONE}
        return {**known, **self.other}

    @property
    def counted(self) -> int:
        """Jobs the server reports a status for."""
        return sum(self.counts.values())

    @property
    def total(self) -> int:
        """Jobs in the batch: ``n_jobs`` if known, else (or if larger) the counted ones."""
        return max(self.n_jobs or 0, self.counted)

    @property
    def done(self) -> int:
        """Jobs that have finished (succeeded or failed)."""
        return self.succeeded + self.failed

    @property
    def remaining(self) -> int:
        """Jobs that have not finished yet (including ones not registered yet)."""
        return self.total - self.done

    @property
    def is_finished(self) -> bool:
        """Every job has finished (and there is at least one)."""
        return self.total > 0 and self.remaining == 0

    @property
    def state(self) -> str:
        """The batch's derived state (see the class docstring)."""
        if self.is_finished:
            return "failed" if self.failed else "succeeded"
        for phase in reversed(ACTIVE_PHASES):
            if getattr(self, phase) > 0:
                return phase
        if self.total > self.counted or self.total == 0:
            return "submitted"  # not registered yet
        return _first(self.other) or "submitted"


def _first(names: Iterable[str]) -> str | None:
    for name in names:
        return name
    return None


@frozen
class JobArgument:
    """One argument of a job as listed: ``argument_key`` / ``argument_value``."""

    argument_key: str
    argument_value: Any = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class JobHardware:
    """A job's hardware: filesystem ids, memory (MB) and CPUs."""

    filesystems: tuple[str, ...] = ()
    memory: int | None = None
    cpu: int | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class BatchJob:
    """A job of a batch.

    ``GET /batches/<id>/jobs`` lists ``job_tool``, ``job_log_id`` and ``job_argument_list``;
    ``GET /batches/<id>/jobs/<job_id>`` describes ``log_id``, ``hardware``, ``args``,
    ``status``, ``reason`` and the times. :attr:`log` and :attr:`arguments` read either.
    There is no log endpoint: the log id names a stream the API does not expose.
    """

    job_id: str
    job_tool: Tool | None = None
    tool_id: str | None = None
    job_log_id: str | None = None
    log_id: str | None = None
    job_argument_list: tuple[JobArgument, ...] = ()
    args: Mapping[str, Any] = field(factory=dict)
    hardware: JobHardware | None = None
    status: JobStatus | str | None = None
    reason: str | None = None
    create_time: datetime | str | None = None
    start_time: datetime | str | None = None
    stop_time: datetime | str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)

    @property
    def id(self) -> str:
        """The job's id (``job_id``): every model has ``.id``."""
        return self.job_id

    @property
    def state(self) -> str:
        """The status in lower case (``"unknown"`` if none was sent)."""
        if self.status is None:
            return "unknown"
        if isinstance(self.status, JobStatus):
            return self.status.value
        return self.status.strip().lower() or "unknown"

    @property
    def is_finished(self) -> bool:
        """The job succeeded or failed."""
        return self.state in _DONE

    @property
    def log(self) -> str | None:
        """The log stream id, whichever key carried it."""
        return self.log_id or self.job_log_id

    @property
    def arguments(self) -> dict[str, Any]:
        """The job's arguments by name, from ``args`` or ``job_argument_list``."""
        out = {a.argument_key: a.argument_value for a in self.job_argument_list}
        out.update(self.args)
        return out


def _positive_int(name: str) -> Any:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        count(value, f"Hardware.{name}", minimum=1)

    return check


def _filesystem_ids(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"Hardware.filesystems must be a sequence of ids, not {value!r}")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str) or not item:
            raise ValueError(f"Hardware.filesystems holds a bad id: {item!r}")
    return out


@frozen(kw_only=True)
class Hardware:
    """What every job of a new batch runs on: ``cpu`` count, ``memory`` in MB, and the ids
    of the ``filesystems`` to mount. The defaults are the vendor client's."""

    cpu: int = field(default=1, validator=_positive_int("cpu"))
    memory: int = field(default=256, validator=_positive_int("memory"))
    filesystems: tuple[str, ...] = field(default=(), converter=_filesystem_ids)
