"""What many test modules share: quick policies, building emulators.

Imported as ``helpers`` (``from helpers import QUICK_POLL``), like ``netkit``: ``tests/`` has
no ``__init__.py`` and pytest's default "prepend" import mode puts it on ``sys.path``. The
fixtures built on these (``emulator``, ``emu``, ``threaded_emulator``) live in ``conftest.py``.
"""

from __future__ import annotations

from typing import Any

import attrs

from aiocompute import PollCadence, ResumePolicy, RetryPolicy
from aiocompute.emulator import Emulator, EmulatorConfig

# -- quick policies -----------------------------------------------------------------------------

#: Polls every 20..50 ms, without jitter: waits against the emulator's fast timings.
QUICK_POLL = PollCadence(initial=0.02, max=0.05, fast=0.02, min_gap=0.01, jitter=0.0)


def quick_retry(base: RetryPolicy | None = None, **changes: Any) -> RetryPolicy:
    """``base`` (default: ``RetryPolicy()``) with backoffs of 10..20 ms and a server's
    ``Retry-After`` capped at 0.1 s, then ``changes``."""
    quick: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "retry_after_max": 0.1}
    return (base if base is not None else RetryPolicy()).replace(**{**quick, **changes})


#: The default retry policy, with quick backoffs (see :func:`quick_retry`).
QUICK_RETRY = quick_retry()

#: Up to three stream reconnects, 10..20 ms apart.
QUICK_RESUME = ResumePolicy(max_reconnects=3, backoff_initial=0.01, backoff_max=0.02)


# -- emulators --------------------------------------------------------------------------------


def make_emulator(*, seed: int = 0, config: EmulatorConfig | None = None, **parts: Any) -> Emulator:
    """An :class:`Emulator`, not started yet (``async with make_emulator(...) as emu:``).

    ``parts`` are :class:`EmulatorConfig` fields (``workbench=``, ``qiskit=``, ``faults=``...),
    applied to ``config`` (default: ``EmulatorConfig()``).
    """
    base = config if config is not None else EmulatorConfig()
    return Emulator(config=attrs.evolve(base, **parts), seed=seed)
