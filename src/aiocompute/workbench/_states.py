"""The Workbench state machines, as data (DESIGN.md "State machines" and API-NOTES.md)."""

from __future__ import annotations

from .._core.states import StateTable

__all__ = ["JOB_STATES", "SESSION_STATES"]

_SESSION_TERMINAL = frozenset({"finished", "failed", "killed", "canceled", "ended"})
# States on the way out: a session in them will not come back to "running" by waiting.
_SHUTTING = _SESSION_TERMINAL

#: ``activity_state`` of a session. ``running`` is ready; ``suspended``/``saved`` have exited
#: but can be resumed; the other extra states come from API-NOTES.md.
SESSION_STATES = StateTable(
    name="workbench.session",
    transient={
        "launching",
        "resuming",
        "pending",
        "starting",
        "suspending",
        "shutting_down",
        "quitting",
        "destroy_pending",
    },
    stable={"running"},
    resumable={"suspended", "saved"},
    terminal=_SESSION_TERMINAL,
    fast={"starting", "resuming", "suspending", "shutting_down", "quitting"},
    reaches={
        "suspending": _SESSION_TERMINAL | {"suspended", "saved"},
        "shutting_down": _SHUTTING,
        "quitting": _SHUTTING,
        "destroy_pending": _SHUTTING,
    },
)

_JOB_TERMINAL = frozenset({"Finished", "Failed", "Killed", "Canceled"})

#: ``status`` of a job or audited job. A ``Finished`` job with a non-zero exit code is a
#: failure, which the waiters check apart from the table.
JOB_STATES = StateTable(
    name="workbench.job",
    transient={"Pending", "Running", "Suspended"},
    terminal=_JOB_TERMINAL,
    reaches={
        "Running": _JOB_TERMINAL | {"Suspended"},
        "Suspended": _JOB_TERMINAL | {"Running"},
    },
)
