"""The ET Engine state machines, as data (DESIGN.md "State machines").

A batch has no state on the wire: :attr:`~aiocompute.etengine.BatchStatus.state` derives it
from the status counts. Statuses come in either case, so the tables normalize with
``str.lower``. Phases of a batch can go back (its furthest unfinished job may finish while
others are still queued), so every unfinished phase reaches every other.
"""

from __future__ import annotations

from .._core.states import StateTable

__all__ = ["BATCH_STATES", "JOB_STATES"]

_PHASES = frozenset({"submitted", "pending", "runnable", "starting", "running"})
_DONE = frozenset({"succeeded", "failed"})


def _lower(state: str) -> str:
    return state.lower()


#: A batch, from its counts: unfinished phases, then succeeded (no job failed) or failed.
BATCH_STATES = StateTable(
    name="etengine.batch",
    transient=_PHASES,
    terminal=_DONE,
    fast={"starting"},
    normalize=_lower,
)

#: One job (AWS Batch statuses, any case). Unknown ones (``submitting``) are transient.
JOB_STATES = StateTable(
    name="etengine.job",
    transient=_PHASES,
    terminal=_DONE,
    fast={"starting"},
    normalize=_lower,
)
