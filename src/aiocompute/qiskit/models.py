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
