"""The emulated Posit Workbench API, served under ``/workbench`` (methods at ``/api/<method>``).

It follows ``reference/posit-workbench-api.txt`` and ``API-NOTES.md``, quirks included: every
call is ``POST /api/<method>`` with ``{"method": ..., "kwparams": {...}}`` (``version``,
``get_users`` and ``get_compute_envs`` also answer ``GET``); application errors are HTTP 200
with ``{"error": {"code", "message"}}``; auth failures are a real HTTP 401; ``version`` is not
wrapped in ``result``; ``launch_job`` nests ``result`` twice; sessions are snake_case with
epoch-millisecond times while live and ISO strings once historical; jobs are camelCase.

State is computed lazily from timestamps (``state = f(now)``), so thousands of sessions cost
no tasks. Every state change is recorded with its exact time on both clocks:
``emu.workbench.sessions[sid].transitions`` and ``emu.workbench.jobs[jid].transitions`` are
lists of :class:`~aiocompute.emulator.Transition` ``(state, wall_time, monotonic)``.

Steering the emulation from the client side
-------------------------------------------
Session names (``launch_session`` ``name``):

- containing ``emu-fail``: the launch fails; ``activity_state`` goes launching -> pending ->
  ``failed`` with a ``status_detail`` message.
- containing ``emu-stuck``: the session stays ``pending`` forever (for wait timeouts).

Job args (``launch_job`` / ``launch_audited_job``), echoed back untouched in ``args``:

=========================  =============================================================
``--emu-chunks=N``         number of output chunks (default ``job_chunk_count``)
``--emu-interval=S``       seconds between chunks (default ``job_chunk_interval``)
``--emu-duration=S``       total running time; spreads the chunks evenly over it
``--emu-bytes=N``          size of each chunk (of each line with --emu-split-lines) in
                           bytes (default ``job_chunk_bytes``)
``--emu-stderr-every=N``   every N-th chunk goes to stderr
``--emu-exit=N``           exitCode when the job finishes (default ``job_exit_code``)
``--emu-fail``             the job ends ``Failed`` (exitCode from --emu-exit, else 1)
``--emu-pending=S``        seconds spent ``Pending`` before ``Running``
``--emu-split-lines``      chunks cut the output at seeded points instead of at line ends
                           (see below)
=========================  =============================================================

Chunk ``i`` (0-based) has the text ``"<stdout|stderr> line <i> of job <id>: <padding>\\n"``
(:meth:`JobRecord.line`), padding derived from the seed, the job id and ``i``, so a reader
can check that nothing was lost or repeated. Chunk ``i`` is produced ``(i + 1) * interval``
after the job starts running; the job ends with its last chunk. ``get_job_output`` replays
the output from the first chunk on every request, keeps the stream open while the job runs
and closes it when the job ends.

With ``--emu-split-lines`` the job writes the same lines, as the same number of chunks with
the same ``outputType`` and timing, but each channel's text is cut at points drawn from the
seed and the job id (the same on every replay): a chunk may end mid-line, the next chunk of
that channel continuing it (possibly after chunks of the other channel), and some chunks
carry several lines. A channel of two lines or more has a chunk that ends mid-line; one of
three lines or more also has a chunk holding the ends of two non-blank lines. The text also
has the shapes line readers get wrong: a blank line after each channel's first line (when
it has two or more), and its last line without a newline. :meth:`JobRecord.chunk` gives
the chunks as written; :meth:`JobRecord.channel_text` a channel's whole text. Meant for
jobs of test size: the cut output is computed at once and kept.

Every chunk written in full to a stream is recorded with its write instant: see
:class:`~aiocompute.emulator.ChunkWrite`, ``JobRecord.writes`` (the most recent
``job_write_log_size`` of the job, over all its streams) and ``emu.on_chunk_written``.

Audited jobs carry two ids, as the reference shows: the audited job id (``id``, used by every
``*_audited_job*`` method and in the finished output) and the launcher job id, which the live
output stream reports as ``jobId``.

``stop_session``, ``stop_job`` and ``stop_audited_job`` answer ``{"result": {}}`` (the
reference only says "an empty result message").

This module declares the API (re-exporting its names) and mounts its routes; the code lives in
``_workbench_rpc`` (the method table, errors, identities, parameter parsing, time formats),
``_workbench_records`` (:class:`SessionRecord`, :class:`JobRecord`, their schedules and the
job output text) and ``_workbench_state`` (:class:`WorkbenchState`: the handlers, the
streamed job output and the dispatch).
"""

from __future__ import annotations

from aiohttp import web

from ._workbench_records import JobRecord, SessionRecord
from ._workbench_rpc import API, API_ROOT, GET_METHODS, METHODS, PREFIX
from ._workbench_rpc import WORKBENCHES as WORKBENCHES
from ._workbench_state import WorkbenchState

__all__ = [
    "API",
    "API_ROOT",
    "METHODS",
    "PREFIX",
    "JobRecord",
    "SessionRecord",
    "WorkbenchState",
    "create_app",
]


def create_app(state: WorkbenchState) -> web.Application:
    """The Workbench sub-application: ``/api/<method>`` routes named ``"workbench.<method>"``."""
    app = web.Application()
    for method in METHODS:

        async def handler(request: web.Request, _method: str = method) -> web.StreamResponse:
            return await state.handle(_method, request)

        name = f"{API}.{method}"
        path = f"{API_ROOT}/api/{method}"
        app.router.add_post(path, handler, name=name)
        if method in GET_METHODS:
            app.router.add_get(path, handler, name=name, allow_head=False)
    return app
