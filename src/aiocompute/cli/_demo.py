"""``aiocompute demo``: the three things aiocompute is for, against the built-in emulator.

1. launch many sessions at once and watch them become ready (one of them fails on purpose);
2. fan out job queries with bounded concurrency, counting the HTTP requests they cost: Posit
   Workbench jobs, then ET Engine batches (status, job list and job reads, then waits; one
   batch has a failing job on purpose);
3. tail a live job log, stdout and stderr told apart.

Everything runs in this process: the emulator listens on a free loopback port and the SDK
talks to it over real HTTP. It needs nothing but ``pip install 'aiocompute[cli]'``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import frozen
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule
from rich.text import Text

from .._core.fanout import FanOutResult, fan_out
from .._exceptions import UnreachableState
from ..etengine.client import ETEngineClient
from ..etengine.models import BatchJob, BatchStatus, SubmittedBatch
from ..workbench._states import SESSION_STATES
from ..workbench.client import WorkbenchClient
from ..workbench.models import Job, JobSpec, LaunchedSession, LaunchParameters
from ._app import EXIT_API, EXIT_OK, CommandTree
from ._etengine import batch_counts_table
from ._output import Output, StateBoard, error_data, fmt_seconds, one_line
from ._workbench import session_state

if TYPE_CHECKING:
    from ..emulator import Emulator, EmulatorConfig

__all__ = ["register"]

T = TypeVar("T")
R = TypeVar("R")

#: The emulator's demo token for user alice.
_TOKEN = "user-token"
#: The emulator's demo ET Engine key, and the tool the demo's batches run.
_ET_KEY = "et-key"
_ET_TOOL = "tool-sim"
#: No wait of the demo may take longer than this (they take a few seconds).
_WAIT_TIMEOUT = 30.0


@frozen
class _Plan:
    """How big and how slow the demo is."""

    sessions: int
    session_delays: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    jobs: int
    job_chunks: tuple[int, int]
    job_interval: tuple[float, float]
    job_pending: tuple[float, float]
    concurrency: int
    tail_chunks: int
    tail_interval: float
    batches: int
    batch_jobs: int
    batch_phase: tuple[float, float]
    batch_run: tuple[float, float]

    def emulator_config(self) -> EmulatorConfig:
        # Imported here: the emulator (aiohttp's server side) is no cost to other commands.
        from ..emulator import EmulatorConfig, ETEngineEmulatorConfig, WorkbenchEmulatorConfig

        launch, pending, starting = self.session_delays
        return EmulatorConfig(
            workbench=WorkbenchEmulatorConfig(
                session_launch_delay=launch,
                session_pending_delay=pending,
                session_starting_delay=starting,
            ),
            # Jobs are listed as soon as their batch exists (register_delay 0), so the
            # demo's jobs.list finds every job of a batch it has just submitted.
            etengine=ETEngineEmulatorConfig(
                register_delay=0.0,
                submitting_delay=self.batch_phase,
                phase_delay=self.batch_phase,
                run_delay=self.batch_run,
            ),
        )


_FULL = _Plan(
    sessions=24,
    session_delays=((0.2, 0.9), (0.4, 1.6), (0.3, 1.2)),
    jobs=20,
    job_chunks=(3, 6),
    job_interval=(0.2, 0.4),
    job_pending=(0.1, 0.6),
    concurrency=8,
    tail_chunks=12,
    tail_interval=0.25,
    batches=4,
    batch_jobs=6,
    batch_phase=(0.05, 0.25),
    batch_run=(0.4, 1.2),
)
# Small and fast, for tests (hidden --quick).
_QUICK = _Plan(
    sessions=6,
    session_delays=((0.02, 0.1), (0.02, 0.1), (0.02, 0.1)),
    jobs=6,
    job_chunks=(1, 3),
    job_interval=(0.02, 0.05),
    job_pending=(0.01, 0.05),
    concurrency=3,
    tail_chunks=5,
    tail_interval=0.04,
    batches=3,
    batch_jobs=2,
    batch_phase=(0.01, 0.03),
    batch_run=(0.02, 0.06),
)


def _requests(emu: Emulator, key: str = "workbench") -> int:
    return int(emu.stats[key])


#: One line of a fan-out table: label, result, seconds, calls in flight, HTTP requests.
_Row = tuple[str, FanOutResult[Any, Any], float, int, int]


# --------------------------------------------------------------------------- progress


class _Steps:
    """Progress of fan-out steps: bars on a terminal, one line per finished step otherwise."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._progress: Progress | None = None
        if out.live:
            self._progress = Progress(
                TextColumn("{task.description:<28}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out.console,
            )

    @contextmanager
    def running(self) -> Iterator[_Steps]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    async def run(
        self,
        label: str,
        fn: Callable[[T], Awaitable[R]],
        items: Sequence[T],
        *,
        concurrency: int,
    ) -> tuple[FanOutResult[T, R], float]:
        """``fan_out(fn, items)`` with a progress bar; returns the result and its duration."""
        progress = self._progress
        task = progress.add_task(label, total=len(items)) if progress is not None else None

        async def call(item: T) -> R:
            try:
                return await fn(item)
            finally:
                if progress is not None and task is not None:
                    progress.advance(task)

        started = time.monotonic()
        result = await fan_out(call, items, concurrency=concurrency)
        elapsed = time.monotonic() - started
        if progress is None:
            self._out.info(
                f"  {label:<28} {result.succeeded}/{len(items)} ok  {fmt_seconds(elapsed)}"
            )
        return result, elapsed


# --------------------------------------------------------------------------- the three parts


async def _sessions_part(
    out: Output, emu: Emulator, wb: WorkbenchClient, plan: _Plan
) -> dict[str, Any]:
    n = plan.sessions
    out.print(Rule(f"1 · Launch {n} sessions at once and watch them become ready"))
    names = [f"demo-{i:02d}" for i in range(1, n + 1)]
    # One launch is told to fail, to show how a wait reports an unreachable state.
    fail_at = min(6, n - 1)
    names[fail_at] = f"demo-{fail_at + 1:02d}-emu-fail"

    async def launch(name: str) -> LaunchedSession:
        params = LaunchParameters(name=name, cluster="Local")
        return await wb.sessions.launch("VS Code", name=name, launch_parameters=params)

    before = _requests(emu)
    started = time.monotonic()
    launched = await fan_out(launch, names, concurrency=n)
    launch_time = time.monotonic() - started
    for name, error in launched.errors:
        out.problem(f"could not launch {name}: {type(error).__name__}: {error}")
    items = [(o.unwrap().id, o.item) for o in launched.outcomes if o.ok]
    out.info(
        f"{len(items)} launch_session requests in {fmt_seconds(launch_time)}, all in flight "
        "at once (launches are never retried blindly: a retry could start a second session)"
    )

    polls_before = _requests(emu, "workbench.get_session")
    board = StateBoard(
        out,
        items,
        table=SESSION_STATES,
        targets=frozenset({"running"}),
        title=f"{len(items)} sessions",
        verbose=False,
    )
    started = time.monotonic()
    async with board:
        results = await wb.sessions.wait_all(
            [one for one, _ in items],
            until="running",
            timeout=_WAIT_TIMEOUT,
            return_exceptions=True,
            on_transition=board.on_transition,
        )
    waited = time.monotonic() - started
    unreachable: list[tuple[str, BaseException]] = []
    other_errors: list[tuple[str, BaseException]] = []
    for (one, name), result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            last = getattr(result, "last", None)
            board.finish(one, session_state(last), result)
            bucket = unreachable if isinstance(result, UnreachableState) else other_errors
            bucket.append((name, result))
        else:
            board.finish(one, session_state(result), None)
    polls = _requests(emu, "workbench.get_session") - polls_before
    running = len(items) - len(unreachable) - len(other_errors)
    out.print(board.summary())
    out.info(
        Text.assemble(
            (f"{running} running", "green"),
            ", ",
            (f"{len(unreachable)} unreachable", "red" if unreachable else "green"),
            f" after {fmt_seconds(waited)}. The {len(items)} waits shared one polling loop: "
            f"{polls} get_session requests in all (each read covers every session).",
        )
    )
    for name, problem in unreachable:
        out.info(Text(f"  {name}: UnreachableState: {one_line(str(problem))}", style="red"))
    for name, problem in other_errors:
        out.problem(f"{name}: {type(problem).__name__}: {problem}")
    # Clean up (not waited for: the emulator forgets everything when the demo ends).
    if items:
        await wb.sessions.stop([one for one, _ in items], force=True)
    return {
        "launched": len(items),
        "running": running,
        "unreachable": len(unreachable),
        "errors": [error_data(e) for _, e in other_errors],
        "get_session_requests": polls,
        "requests": _requests(emu) - before,
        "seconds": round(waited, 3),
        "expected": running == len(items) - 1 and len(unreachable) == 1 and not other_errors,
    }


def _job_specs(plan: _Plan, rng: random.Random) -> list[JobSpec]:
    specs = []
    fail_at = min(12, plan.jobs - 1)
    for i in range(plan.jobs):
        args = [
            f"--emu-chunks={rng.randint(*plan.job_chunks)}",
            f"--emu-interval={rng.uniform(*plan.job_interval):.2f}",
            f"--emu-pending={rng.uniform(*plan.job_pending):.2f}",
        ]
        if i == fail_at:
            args.append("--emu-fail")
        specs.append(
            JobSpec(name=f"batch-{i + 1:02d}", cluster="Local", command="simulate", args=args)
        )
    return specs


async def _fanout_part(
    out: Output,
    emu: Emulator,
    wb: WorkbenchClient,
    et: ETEngineClient,
    plan: _Plan,
    rng: random.Random,
) -> dict[str, Any]:
    n, c = plan.jobs, plan.concurrency
    out.print(Rule(f"2 · Fan out job queries, at most {c} in flight"))
    out.info(Text(f"Posit Workbench: {n} jobs", style="bold"))
    specs = _job_specs(plan, rng)
    steps = _Steps(out)
    rows: list[_Row] = []

    async def wait(job_id: str) -> Job:
        return await wb.jobs.wait(job_id, timeout=_WAIT_TIMEOUT)

    with steps.running():
        before = _requests(emu)
        launched, seconds = await steps.run("jobs.launch", wb.jobs.launch, specs, concurrency=c)
        rows.append(("jobs.launch", launched, seconds, c, _requests(emu) - before))
        ids = [o.unwrap().id for o in launched.outcomes if o.ok]
        names = {o.unwrap().id: o.item.name for o in launched.outcomes if o.ok}

        before = _requests(emu)
        got, seconds = await steps.run("jobs.get", wb.jobs.get, ids, concurrency=c)
        rows.append(("jobs.get", got, seconds, c, _requests(emu) - before))

        before = _requests(emu)
        waited, seconds = await steps.run("jobs.wait", wait, ids, concurrency=len(ids))
        rows.append(("jobs.wait", waited, seconds, len(ids), _requests(emu) - before))

    _steps_table(out, rows, "Workbench fan-out")
    wait_requests = rows[2][4]
    out.info(
        f"{len(ids)} jobs.get calls cost one request each; {len(ids)} concurrent jobs.wait "
        f"calls cost {wait_requests} requests in all: the waits of one client share one "
        "polling loop, and each tick reads every job at once."
    )
    for job_id, error in waited.errors:
        out.info(
            Text(
                f"  {names.get(job_id, job_id)}: {type(error).__name__}: {one_line(str(error))}",
                style="red",
            )
        )
    batches = await _batches_part(out, emu, et, plan)
    return {
        "jobs": n,
        "concurrency": c,
        "steps": _steps_data(rows),
        "etengine": batches,
        "expected": launched.failed == 0
        and got.failed == 0
        and waited.failed == 1
        and bool(batches["expected"]),
    }


def _steps_data(rows: Sequence[_Row]) -> dict[str, dict[str, Any]]:
    return {
        label: {
            "calls": len(result),
            "ok": result.succeeded,
            "failed": result.failed,
            "requests": requests,
            "seconds": round(seconds, 3),
        }
        for label, result, seconds, _, requests in rows
    }


def _steps_table(out: Output, rows: Sequence[_Row], title: str) -> None:
    table = out.table(
        "CALLS", "COUNT", "OK", "FAILED", "IN FLIGHT", "HTTP REQUESTS", "TIME", title=title
    )
    for label, result, seconds, in_flight, requests in rows:
        table.add_row(
            label,
            str(len(result)),
            Text(str(result.succeeded), style="green"),
            Text(str(result.failed), style="red" if result.failed else "green"),
            str(in_flight),
            str(requests),
            fmt_seconds(seconds),
        )
    out.print(table)


def _batch_args(plan: _Plan) -> list[list[dict[str, Any]]]:
    """The jobs of each batch (one job per entry); one job of one batch fails on purpose."""
    fail_at = min(1, plan.batches - 1)
    batches = []
    for b in range(plan.batches):
        jobs: list[dict[str, Any]] = [
            {"seed": b * plan.batch_jobs + j, "steps": 1000} for j in range(plan.batch_jobs)
        ]
        if b == fail_at:
            jobs[-1]["emu-fail"] = True  # the emulator fails jobs whose arguments say so
        batches.append(jobs)
    return batches


def _seen(states: Sequence[str]) -> str:
    return ", ".join(f"{state} {n}" for state, n in Counter(states).most_common()) or "-"


async def _batches_part(
    out: Output, emu: Emulator, et: ETEngineClient, plan: _Plan
) -> dict[str, Any]:
    n, c = plan.batches, plan.concurrency
    n_jobs = n * plan.batch_jobs
    out.info(Text(f"ET Engine: {n} batches of {plan.batch_jobs} jobs ({_ET_TOOL})", style="bold"))
    steps = _Steps(out)
    rows: list[_Row] = []
    started = _requests(emu, "etengine")

    async def create(jobs: list[dict[str, Any]]) -> SubmittedBatch:
        return await et.batches.create(_ET_TOOL, variable_args=jobs)

    async def get_job(pair: tuple[str, str]) -> BatchJob:
        return await et.jobs.get(*pair)

    async def wait(batch_id: str) -> BatchStatus:
        return await et.batches.wait(batch_id, timeout=_WAIT_TIMEOUT)

    with steps.running():
        before = _requests(emu, "etengine")
        created, seconds = await steps.run(
            "batches.create", create, _batch_args(plan), concurrency=c
        )
        rows.append(
            ("batches.create", created, seconds, min(c, n), _requests(emu, "etengine") - before)
        )
        ids = [o.unwrap().batch_id for o in created.outcomes if o.ok]
        batch_ids = [one for one in ids if one is not None]

        before = _requests(emu, "etengine")
        statuses, seconds = await steps.run(
            "batches.status", et.batches.status, batch_ids, concurrency=c
        )
        in_flight = min(c, len(batch_ids))
        rows.append(
            ("batches.status", statuses, seconds, in_flight, _requests(emu, "etengine") - before)
        )

        before = _requests(emu, "etengine")
        listed, seconds = await steps.run("jobs.list", et.jobs.list, batch_ids, concurrency=c)
        rows.append(("jobs.list", listed, seconds, in_flight, _requests(emu, "etengine") - before))
        pairs = [(o.item, job.job_id) for o in listed.outcomes if o.ok for job in o.unwrap()]

        before = _requests(emu, "etengine")
        got, seconds = await steps.run("jobs.get", get_job, pairs, concurrency=c)
        rows.append(
            ("jobs.get", got, seconds, min(c, len(pairs)), _requests(emu, "etengine") - before)
        )

        before = _requests(emu, "etengine")
        every = max(1, len(batch_ids))  # every wait at once: they share one poller
        waited, seconds = await steps.run("batches.wait", wait, batch_ids, concurrency=every)
        rows.append(("batches.wait", waited, seconds, every, _requests(emu, "etengine") - before))

    _steps_table(out, rows, "ET Engine fan-out")
    out.info(
        f"While the batches ran, batches.status saw: "
        f"{_seen([o.unwrap().state for o in statuses.outcomes if o.ok])}; "
        f"jobs.get saw: {_seen([o.unwrap().state for o in got.outcomes if o.ok])} "
        "(job statuses come in upper or lower case; the SDK reads them alike)."
    )
    finals: list[tuple[str, BatchStatus | None, BaseException | None]] = []
    unreachable: list[tuple[str, BaseException]] = []
    others: list[tuple[str, BaseException]] = []
    for outcome in waited.outcomes:
        error = outcome.error
        if error is None:
            finals.append((outcome.item, outcome.value, None))
            continue
        last = getattr(error, "last", None)
        finals.append((outcome.item, last if isinstance(last, BatchStatus) else None, error))
        (unreachable if isinstance(error, UnreachableState) else others).append(
            (outcome.item, error)
        )
    out.print(batch_counts_table(out, finals, title="ET Engine batches, once finished"))
    succeeded = sum(s.succeeded for _, s, _ in finals if s is not None)
    failed = sum(s.failed for _, s, _ in finals if s is not None)
    seen = Counter(
        {
            method: count
            for key, count in emu.stats.items()
            if key.startswith("etengine.")
            for method in [key.split(".", 1)[1]]
        }
    )
    requests = _requests(emu, "etengine") - started
    out.info(
        Text.assemble(
            f"{len(batch_ids)} batches, {len(pairs)} jobs: ",
            (f"{succeeded} succeeded", "green"),
            ", ",
            (f"{failed} failed", "red" if failed else "green"),
            f". The emulator saw {requests} ET Engine requests ("
            + ", ".join(f"{method} {count}" for method, count in sorted(seen.items()))
            + "). There is no bulk status read: each wait polls its own batch. The wait "
            "for the batch with a failed job ended as soon as that was known, not at its "
            "deadline.",
        )
    )
    for batch_id, problem in unreachable:
        out.info(Text(f"  {batch_id}: UnreachableState: {one_line(str(problem))}", style="red"))
    for batch_id, problem in others:
        out.problem(f"{batch_id}: {type(problem).__name__}: {problem}")
    return {
        "batches": n,
        "jobs": n_jobs,
        "steps": _steps_data(rows),
        "succeeded_jobs": succeeded,
        "failed_jobs": failed,
        "unreachable": len(unreachable),
        "requests": requests,
        "requests_by_method": dict(seen),
        "expected": created.failed == 0
        and len(batch_ids) == n
        and statuses.failed == 0
        and listed.failed == 0
        and len(pairs) == n_jobs
        and got.failed == 0
        and waited.failed == 1
        and len(unreachable) == 1
        and failed == 1
        and succeeded == n_jobs - 1,
    }


async def _tail_part(out: Output, wb: WorkbenchClient, plan: _Plan) -> dict[str, Any]:
    out.print(Rule("3 · Tail a live job log"))
    spec = JobSpec(
        name="train-model",
        cluster="Local",
        command="python train.py",
        args=[
            f"--emu-chunks={plan.tail_chunks}",
            f"--emu-interval={plan.tail_interval}",
            "--emu-stderr-every=4",
            "--emu-pending=0.2",
        ],
    )
    job = await wb.jobs.launch(spec)
    out.info(f"job {job.id} ({job.name}) launched; its output as it is produced:")
    counts = {"stdout": 0, "stderr": 0}
    started = time.monotonic()
    async for line in wb.jobs.lines(job.id):
        is_err = line.output_type == "stderr"
        counts["stderr" if is_err else "stdout"] += 1
        if not out.json_mode:
            # One stream, so the order is kept; stderr is marked and shown in red.
            stamp = fmt_seconds(time.monotonic() - started)
            out.out_line(
                f"{stamp:>6} {'err' if is_err else 'out'} │ {line.text}",
                style="red" if is_err else None,
            )
    final = await wb.jobs.wait(job.id, timeout=_WAIT_TIMEOUT)
    elapsed = time.monotonic() - started
    out.info(
        Text.assemble(
            f"{counts['stdout']} stdout and {counts['stderr']} stderr lines in "
            f"{fmt_seconds(elapsed)}; job ",
            (final.state, "green" if final.succeeded else "red"),
            f", exit code {final.exit_code}",
        )
    )
    return {
        "job_id": job.id,
        "stdout_lines": counts["stdout"],
        "stderr_lines": counts["stderr"],
        "status": final.state,
        "exit_code": final.exit_code,
        "expected": final.succeeded
        and counts["stdout"] + counts["stderr"] == plan.tail_chunks
        and counts["stderr"] > 0,
    }


async def _demo(args: argparse.Namespace, out: Output) -> int:
    plan = _QUICK if args.quick else _FULL
    rng = random.Random(args.seed)
    started = time.monotonic()
    from ..emulator import Emulator

    async with Emulator(port=0, config=plan.emulator_config(), seed=args.seed) as emu:
        out.info(
            Text.assemble(
                ("aiocompute demo", "bold"),
                f": emulator on {emu.url} (Posit Workbench API, token {_TOKEN!r}; "
                f"ET Engine API, key {_ET_KEY!r})",
            )
        )
        async with (
            WorkbenchClient(emu.workbench_url, token=_TOKEN) as wb,
            ETEngineClient(api_key=_ET_KEY, base_url=emu.etengine_url) as et,
        ):
            report = {
                "sessions": await _sessions_part(out, emu, wb, plan),
                "fan_out": await _fanout_part(out, emu, wb, et, plan, rng),
                "tail": await _tail_part(out, wb, plan),
            }
        total_requests = _requests(emu) + _requests(emu, "etengine")
    elapsed = time.monotonic() - started
    ok = all(part["expected"] for part in report.values())
    out.emit({**report, "requests": total_requests, "seconds": round(elapsed, 3), "ok": ok})
    out.print(Rule())
    if ok:
        out.info(
            f"Done in {fmt_seconds(elapsed)}, {total_requests} HTTP requests in all. "
            "Try it yourself: aiocompute emulator --port 8000"
        )
        return EXIT_OK
    out.problem("the demo did not go as expected (see above)")
    return EXIT_API


def register(tree: CommandTree) -> None:
    """Add ``aiocompute demo``."""
    p = tree.command(
        "demo",
        help="see aiocompute at work against the built-in emulator (~15 s)",
        description=(
            "Start the emulator in this process and show, with live progress:\n"
            "  1. many sessions launched at once, watched until they are ready\n"
            "     (one fails on purpose);\n"
            "  2. job queries fanned out with bounded concurrency, and what they cost\n"
            "     in HTTP requests: Posit Workbench jobs, then ET Engine batches\n"
            "     (one of them has a failing job on purpose);\n"
            "  3. a live job log, stdout and stderr told apart.\n"
            "Needs no server and no credentials."
        ),
        example="aiocompute demo",
        handler=_demo,
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the emulator (default 7)")
    # Smaller and faster, for tests.
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
