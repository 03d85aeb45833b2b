"""The Qiskit Runtime session and job state machines, as data (DESIGN.md "State machines").

Waits read a session's :attr:`~aiocompute.qiskit.Session.effective_state`: the wire ``state``
refined by ``accepting_jobs`` (an open/active/inactive session that accepts no more jobs is
``pending_closed``: it only closes from there).
"""

from __future__ import annotations

from .._core.states import StateTable

__all__ = ["JOB_STATES", "SESSION_STATES"]

_ALL_BUT_OPEN = frozenset({"active", "inactive", "pending_inactive", "pending_closed", "closed"})

#: ``state`` of a session. ``open`` waits for its backend, ``active`` has priority on it,
#: ``inactive`` lost priority (no jobs running) but can become active again, the two
#: ``pending_*`` states finish their running jobs first, ``closed`` is final.
SESSION_STATES = StateTable(
    name="qiskit.session",
    transient={"open", "pending_inactive", "pending_closed"},
    stable={"active", "inactive"},
    terminal={"closed"},
    fast={"pending_closed"},
    reaches={
        # A session never goes back to open once it has been active.
        "active": _ALL_BUT_OPEN,
        "inactive": _ALL_BUT_OPEN,
        # Its jobs may still keep it active for a while; it cannot reopen.
        "pending_inactive": _ALL_BUT_OPEN,
        # Draining: it only closes.
        "pending_closed": frozenset({"closed"}),
    },
)


def _lower(state: str) -> str:
    return state.lower()


#: ``status`` of a job, in any case (IBM's own client compares them upper-cased). A job
#: waits in ``Queued``, runs, and ends ``Completed``, ``Failed`` or ``Cancelled`` (the
#: service has also said ``"Cancelled - Ran too long"`` for a job past its time limit).
JOB_STATES = StateTable(
    name="qiskit.job",
    transient={"queued", "running"},
    terminal={"completed", "failed", "cancelled", "cancelled - ran too long"},
    normalize=_lower,
)
