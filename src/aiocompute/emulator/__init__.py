"""An in-process server that speaks the compute APIs faithfully, for tests, demos and benchmarks.

Think of it as moto for aiocompute: start one on a loopback port, point a client at it, and
steer timings and faults from the test::

    from aiocompute.emulator import Emulator

    async with Emulator(seed=7) as emu:
        # Workbench API at emu.workbench_url + "/api/<method>"
        # tokens: "user-token" (alice), "admin-token", "super-token", "bob-token"
        emu.faults.latency["workbench"] = 0.02
        ...

One aiohttp application serves every API under its own path prefix: ``/workbench``
(``emu.workbench_url``), ``/qiskit`` (``emu.qiskit_url``, IAM at ``emu.qiskit_iam_url``,
API key ``qiskit-key``), ``/lakesail`` (``emu.lakesail_url``, token ``lakesail-token``) and
``/etengine`` (``emu.etengine_url``, key ``et-key``). Each API module documents its
conventions (``emu-fail`` names, ``--emu-*`` job args...); :class:`FaultConfig` has the
fault switches, shared by all.

Streams can be watched from the test: ``emu.open_streams`` counts the streamed responses
being served now, and each streamed value written in full is reported as a
:class:`ChunkWrite` (with its write instant) to ``emu.on_chunk_written`` and kept per job in
``emu.workbench.jobs[job_id].writes``.

:class:`~aiocompute.emulator.chaos.ChaosProxy` (in :mod:`aiocompute.emulator.chaos`) goes
between a client and the emulator and injects network faults: a connection cut before or
after the server acted, gateway errors, 429s, stalls.
"""

from __future__ import annotations

from ._config import (
    EmulatorConfig,
    ETEngineEmulatorConfig,
    FaultConfig,
    LakeSailEmulatorConfig,
    QiskitEmulatorConfig,
    QiskitJobsConfig,
    WorkbenchEmulatorConfig,
)
from ._qiskit_jobs import QiskitJobRecord, QiskitJobs
from ._runtime import ChunkWrite, RequestRecord, Transition
from ._server import Emulator, serve
from .etengine import ETBatchRecord, ETEngineState, ETJobRecord
from .lakesail import LakeSailSessionRecord, LakeSailState
from .qiskit import QiskitSessionRecord, QiskitState
from .workbench import JobRecord, SessionRecord, WorkbenchState

__all__ = [
    "ChunkWrite",
    "ETBatchRecord",
    "ETEngineEmulatorConfig",
    "ETEngineState",
    "ETJobRecord",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "JobRecord",
    "LakeSailEmulatorConfig",
    "LakeSailSessionRecord",
    "LakeSailState",
    "QiskitEmulatorConfig",
    "QiskitJobRecord",
    "QiskitJobs",
    "QiskitJobsConfig",
    "QiskitSessionRecord",
    "QiskitState",
    "RequestRecord",
    "SessionRecord",
    "Transition",
    "WorkbenchEmulatorConfig",
    "WorkbenchState",
    "serve",
]
