"""An in-process server that speaks the compute APIs faithfully, for tests, demos and benchmarks.

Think of it as moto for aiocompute: start one on a loopback port, point a client at it, and
steer timings and faults from the test::

    from aiocompute.emulator import Emulator

    async with Emulator(seed=7) as emu:
        # Workbench API at emu.workbench_url + "/api/<method>"
        # tokens: "user-token" (alice), "admin-token", "super-token", "bob-token"
        emu.faults.latency["workbench"] = 0.02
        ...

One aiohttp application serves every API under its own path prefix (``/workbench`` for now).
See :mod:`aiocompute.emulator.workbench` for the Workbench conventions (``emu-fail`` session
names, ``--emu-*`` job args) and :class:`FaultConfig` for the fault switches.
"""

from __future__ import annotations

from ._config import EmulatorConfig, FaultConfig, WorkbenchEmulatorConfig
from ._server import Emulator, RequestRecord, Transition, serve
from .workbench import JobRecord, SessionRecord, WorkbenchState

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "JobRecord",
    "RequestRecord",
    "SessionRecord",
    "Transition",
    "WorkbenchEmulatorConfig",
    "WorkbenchState",
    "serve",
]
