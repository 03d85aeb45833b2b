"""The LakeSail session state machine, as data (DESIGN.md "State machines", API-NOTES.md)."""

from __future__ import annotations

from .._core.states import StateTable

__all__ = ["READY_STATES", "RELAUNCHABLE_STATES", "SESSION_STATES"]

_TERMINAL = frozenset({"closed", "failed"})

#: States in which a session's compute is up: what a wait targets by default.
READY_STATES = frozenset({"active", "idle"})

#: States from which ``relaunch`` is allowed (the reference: "closed or failed").
RELAUNCHABLE_STATES = _TERMINAL

#: ``status`` of a session. ``pending`` leads anywhere; ``active`` and ``idle`` go back and
#: forth with use until the session is closed (or fails); ``closed`` and ``failed`` are final
#: (``relaunch`` answers a new session, the old one stays as it is).
SESSION_STATES = StateTable(
    name="lakesail.session",
    transient={"pending"},
    stable={"active", "idle"},
    terminal=_TERMINAL,
    reaches={
        "active": _TERMINAL | {"idle"},
        "idle": _TERMINAL | {"active"},
    },
)
