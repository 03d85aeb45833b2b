"""State tables: a resource's state machine as data (DESIGN.md "State machines").

A :class:`StateTable` says which states are transient, terminal, resumable, stable or fast,
and which states can still lead to which. The waiter engine (:mod:`.polling`) decides with
it whether a wait can still succeed; the API packages declare theirs in ``_states.py``; the
CLI reads them to colour and summarise states. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from attrs import field, frozen

__all__ = ["ServerEnum", "StateTable"]


class ServerEnum(str, enum.Enum):
    """An enum of the server's strings (states, modes) that prints as the string.

    ``class X(str, Enum)`` compares equal to its value, but Python 3.11 changed its
    ``str()`` and ``format()`` to ``X.RUNNING``; these keep ``running`` on every version,
    so ``print(session.state)`` and f-strings show what the server sent.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


def _identity(state: str) -> str:
    return state


def _names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        # frozenset("running") would be a set of letters: refuse instead.
        raise TypeError(f"expected a collection of state names, got the string {value!r}")
    return frozenset(value)


@frozen
class StateTable:
    """One resource's state machine, as data.

    - ``transient``: states on the way somewhere (``launching``, ``pending``);
    - ``terminal``: final states; a terminal state reaches only itself;
    - ``resumable``: exited but can come back through an explicit call (Workbench
      ``suspended``/``saved`` -> ``resume``). Waiting alone never leaves them, so for a wait
      they are as final as terminal states;
    - ``stable``: states a resource may stay in indefinitely but can still leave (Workbench
      ``running``, LakeSail ``idle``): usually what one waits for;
    - ``fast``: states about to change (``starting``), polled every ``PollCadence.fast``;
    - ``normalize``: applied to every state read from the server and every name a caller
      passes (e.g. ``str.lower`` for an API whose case varies). The table's own names must
      already be normalized;
    - ``reaches``: which states can still lead to which. Entries given override the derived
      default for their state: transient and stable states reach every known state, terminal
      and resumable states reach only themselves.

    A state not in the table (an API grew a new one) is treated as transient: waits keep
    polling; the :class:`Poller` counts it in :attr:`PollerStats.unknown_states`.
    """

    name: str
    transient: frozenset[str] = field(converter=_names)
    terminal: frozenset[str] = field(converter=_names)
    resumable: frozenset[str] = field(default=frozenset(), converter=_names)
    stable: frozenset[str] = field(default=frozenset(), converter=_names)
    fast: frozenset[str] = field(default=frozenset(), converter=_names)
    normalize: Callable[[str], str] = field(default=_identity)
    reaches: Mapping[str, frozenset[str]] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        groups = {
            "transient": self.transient,
            "terminal": self.terminal,
            "resumable": self.resumable,
            "stable": self.stable,
        }
        seen: dict[str, str] = {}
        for group, states in groups.items():
            for state in states:
                if not isinstance(state, str) or not state:
                    raise ValueError(f"{self.name}: state names must be non-empty strings")
                if state in seen:
                    raise ValueError(
                        f"{self.name}: state {state!r} is both {seen[state]} and {group}"
                    )
                if self.normalize(state) != state:
                    raise ValueError(
                        f"{self.name}: state {state!r} is not normalized "
                        f"(normalize gives {self.normalize(state)!r})"
                    )
                seen[state] = group
        known = frozenset(seen)
        if stray := self.fast - known:
            raise ValueError(f"{self.name}: fast states {sorted(stray)} are not in the table")
        derived: dict[str, frozenset[str]] = {}
        for state in known:
            derived[state] = (
                frozenset({state}) if state in self.terminal | self.resumable else known
            )
        for state, targets in self.reaches.items():
            targets = _names(targets)
            if state not in known:
                raise ValueError(f"{self.name}: reaches names unknown state {state!r}")
            if stray := targets - known:
                raise ValueError(
                    f"{self.name}: reaches[{state!r}] names unknown states {sorted(stray)}"
                )
            if state in self.terminal and targets - {state}:
                others = sorted(targets - {state})
                raise ValueError(f"{self.name}: terminal state {state!r} cannot reach {others}")
            derived[state] = targets | {state}
        # The field is replaced by the complete, read-only map (frozen: via object.__setattr__).
        object.__setattr__(self, "reaches", MappingProxyType(derived))

    @property
    def states(self) -> frozenset[str]:
        """Every state the table knows."""
        return frozenset(self.reaches)

    def is_known(self, state: str) -> bool:
        """Whether ``state`` (normalized) is in the table."""
        return self.normalize(state) in self.reaches

    def is_terminal(self, state: str) -> bool:
        """Whether ``state`` is terminal (never resumable, never unknown)."""
        return self.normalize(state) in self.terminal

    def is_settled(self, state: str) -> bool:
        """Whether waiting can no longer change ``state``: terminal, resumable, or a state
        whose ``reaches`` is only itself. Unknown states are not settled."""
        s = self.normalize(state)
        targets = self.reaches.get(s)
        return targets is not None and targets <= {s}

    def can_reach(self, state: str, target: str) -> bool:
        """Whether a resource now in ``state`` may still, by waiting, come to ``target``.

        A state reaches itself; an unknown state may go anywhere.
        """
        s, t = self.normalize(state), self.normalize(target)
        if s == t:
            return True
        targets = self.reaches.get(s)
        return True if targets is None else t in targets
