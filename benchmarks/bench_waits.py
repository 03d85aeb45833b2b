"""Benchmark: waiting for 1,000 sessions to start, ``wait_all`` against naive polling.

Run from the repository root::

    python -m benchmarks.bench_waits                    # 1,000 sessions (about 20 s)
    python -m benchmarks.bench_waits --sessions 10000   # 10,000 sessions (about 2 min)
    python -m benchmarks.bench_waits --quick            # 40 sessions, a few seconds

    python -m benchmarks.bench_waits --sessions 10000 --start-offset 0   # no offset

Targets (:data:`TARGETS`): for 1,000 sessions, requests <= 5% of naive 1 s polling, lag p99
<= 300 ms, wall <= the slowest start + 0.5 s; from 10,000 sessions, requests <= 2% and client
CPU <= 0.3x of naive 1 s polling, lag p99 <= 200 ms, wall as before. The lag targets are
for the sessions that start during the wait (the detection lag proper); sessions already
running when the wait begins are reported apart (see below), with a target of their own:
lag p99 <= one light and one full read of all sessions + 25 ms per 1,000 sessions.

The emulator runs in its own process (see ``benchmarks/_common.py``) and is configured so
that a session goes launching -> pending -> starting -> running in U(1, 3) s in total
(launching U(0.8, 2.8) s, pending 0.1 s, starting 0.1 s), plus the start offset below. For
each contender a fresh emulator (same seed, so the same start delays in launch order;
``--quick`` shares one) gets N sessions launched at once (through the client, 100 in
flight), then the client waits for all of them:

* ``wait_all``: ``wb.sessions.wait_all(ids, timeout=...)``: one shared, coalescing poller;
* ``naive 1 s``: one task per session, ``wb.sessions.get(id)`` then ``sleep(1)`` until
  running (N concurrent tasks);
* ``naive 0.1 s``: the same with ``sleep(0.1)``; its run is bounded (``--bound``) because
  N tasks polling ten times a second can overload a 2-core machine: that is a finding.

Measured per contender, over the waiting phase only (launches excluded):

* wall: from the start of the wait to the moment the client knew the last session was
  running; ``over slowest``: that moment minus the emulator's time for the last session to
  enter running (the floor any waiter has);
* requests: ``get_session`` calls counted by the emulator (plus any other call made while
  waiting, e.g. ``get_historical_session``);
* detection lag: for each session, the time the client learned it was running (the
  ``on_transition`` callback for ``wait_all``, the return of the ``get`` for naive polling,
  both ``time.time()``) minus the wall time the emulator recorded for its entering running,
  or minus the start of the wait for the few sessions already running by then (launching
  1,000 sessions takes a moment, and a session cannot be detected before anyone looks);
* CPU seconds of the client and of the emulator process during the wait.

Start offset: with many sessions the launches take longer than a session takes to start
(10,000 launches at 100 in flight take 10-20 s on 2 cores), so without it most sessions
would be running before the wait begins, and their "lag" would be the time the client takes
to read and return them all (one light and one full read of each), not a detection lag.
From :data:`AUTO_OFFSET_FROM` sessions on, every session's launching phase is therefore
lengthened by ``N / LAUNCH_RATE_FLOOR`` seconds (10,000: 25 s; ``--start-offset`` sets it,
0 turns it off), so that the sessions start after the last launch, during the wait; the
same offset for every contender (the same seed draws the same delays on top of it). The
bound grows by the offset too. Lags are reported in two groups:

* "started": sessions that entered running after the wait began; lag = learned - entered
  running. The lag targets apply to these.
* "already running": sessions running when the wait began (with no offset, or launches
  slower than the offset allows for); lag = learned - start of the wait, i.e. the cost of
  the first tick over them. Reported apart, with their count, next to what one light and
  one full read of all N sessions take (``wb.sessions``' own two reads, timed once each
  after the ``wait_all`` run): that tick cannot take less. Its target is on what it takes
  beyond them, per 1,000 sessions.

A naive contender that did not finish within ``--bound`` made fewer requests and burned
less CPU than it would have: the ratios against it then flatter naive polling, not
``wait_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiocompute import AioComputeError, TransitionEvent, WorkbenchClient, fan_out
from aiocompute.workbench.models import Session

from ._common import (
    TOKEN,
    EmulatorProcess,
    Report,
    add_common_args,
    cpu_seconds,
    percentile,
)

#: Emulator timings: launching + pending + starting = U(1, 3) s.
FULL_TIMINGS = {
    "session_launch_delay": (0.8, 2.8),
    "session_pending_delay": 0.1,
    "session_starting_delay": 0.1,
}
QUICK_TIMINGS = {
    "session_launch_delay": (0.2, 0.6),
    "session_pending_delay": 0.05,
    "session_starting_delay": 0.05,
}
#: Sessions launched at once by the client (its connection pool holds 100).
LAUNCH_CONCURRENCY = 100
#: From this many sessions on, the start offset is on by default (see the module docstring).
AUTO_OFFSET_FROM = 5_000
#: Launches per second the offset allows for: 10,000 launches took 11-18 s here (550-900/s),
#: so N / 400 s leaves room for a loaded machine.
LAUNCH_RATE_FLOOR = 400.0

#: Targets by the number of sessions (the largest key not above the run's count applies):
#: requests and client CPU as a fraction of naive 1 s polling (None: no target), lag p99
#: in ms (sessions that start during the wait), wall over the slowest start in s, and for
#: sessions already running: lag p99 beyond one light and one full read of all sessions,
#: in ms per 1,000 sessions.
TARGETS: dict[int, dict[str, float | None]] = {
    0: {
        "requests": 0.05,
        "client_cpu": None,
        "lag_p99_ms": 300.0,
        "over_slowest": 0.5,
        "first_tick_ms_per_1000": 25.0,
    },
    10_000: {
        "requests": 0.02,
        "client_cpu": 0.3,
        "lag_p99_ms": 200.0,
        "over_slowest": 0.5,
        "first_tick_ms_per_1000": 25.0,
    },
}


def targets_for(count: int) -> dict[str, float | None]:
    """The targets of a run of ``count`` sessions."""
    return TARGETS[max(size for size in TARGETS if size <= count)]


def auto_offset(count: int) -> float:
    """The default start offset for ``count`` sessions: none below :data:`AUTO_OFFSET_FROM`,
    else enough for the launches to end before the first session starts."""
    return 0.0 if count < AUTO_OFFSET_FROM else count / LAUNCH_RATE_FLOOR


def offset_timings(timings: dict[str, Any], offset: float) -> dict[str, Any]:
    """``timings`` with every session's launching phase ``offset`` seconds longer. The
    emulator draws U(low, high) as low + (high - low) * random(), so the same seed gives
    the same delays, shifted."""
    low, high = timings["session_launch_delay"]
    return {**timings, "session_launch_delay": (low + offset, high + offset)}


async def launch_sessions(wb: WorkbenchClient, count: int) -> list[str]:
    """Launch ``count`` sessions at once; their ids in launch order."""

    async def launch(index: int) -> str:
        name = f"bench-{index}"
        # No reconciliation: it lists the user's sessions before each launch (10,000
        # launches would read 50 million sessions), and this emulator loses no answer.
        launched = await wb.sessions.launch(
            "VS Code",
            name=name,
            launch_parameters={"name": name, "cluster": "Local"},
            reconcile=False,
        )
        return launched.id

    result = await fan_out(launch, range(count), concurrency=LAUNCH_CONCURRENCY)
    return result.values()


async def wait_with_wait_all(
    wb: WorkbenchClient, ids: list[str], timeout: float
) -> tuple[dict[str, float], int]:
    """``wait_all``; returns when each id was learned running, and how many waits failed
    (timed out: the run is then reported as incomplete)."""
    learned: dict[str, float] = {}

    def on_transition(event: TransitionEvent[Session]) -> None:
        if event.new_state == "running":
            learned.setdefault(event.id, time.time())

    results = await wb.sessions.wait_all(
        ids, timeout=timeout, on_transition=on_transition, return_exceptions=True
    )
    return learned, sum(1 for r in results if isinstance(r, BaseException))


async def wait_naively(
    wb: WorkbenchClient, ids: list[str], interval: float, bound: float
) -> tuple[dict[str, float], int]:
    """One task per id: ``get`` then ``sleep(interval)`` until running, for at most ``bound``
    seconds. Returns when each id was learned running, and how many reads failed."""
    learned: dict[str, float] = {}
    errors = 0

    async def poll(sid: str) -> None:
        nonlocal errors
        while True:
            try:
                session = await wb.sessions.get(sid)
            except AioComputeError:
                errors += 1  # what a naive loop does: try again next time
            else:
                if session.activity_state == "running":
                    learned[sid] = time.time()
                    return
            await asyncio.sleep(interval)

    tasks = [asyncio.create_task(poll(sid)) for sid in ids]
    _done, pending = await asyncio.wait(tasks, timeout=bound)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return learned, errors


async def time_reads(wb: WorkbenchClient, ids: list[str]) -> tuple[float, float]:
    """Seconds one light read (what a poll asks) and one full read of ``ids`` take."""
    light = time.perf_counter()
    await wb.sessions._fetch_many(ids)
    full = time.perf_counter()
    await wb.sessions._fetch_full(ids)
    return full - light, time.perf_counter() - full


async def run_contender(
    url: str, emu: EmulatorProcess, name: str, count: int, bound: float
) -> dict[str, Any]:
    """Launch ``count`` sessions, wait for them the ``name`` way, measure."""
    async with WorkbenchClient(url, token=TOKEN) as wb:
        ids = await launch_sessions(wb, count)
        before = emu.stats()
        server_cpu = emu.cpu()
        client_cpu = cpu_seconds()
        started = time.time()
        if name == "wait_all":
            learned, errors = await wait_with_wait_all(wb, ids, timeout=bound)
            records = wb.sessions._waiter.stats.ids_fetched  # sessions read, all requests
        else:
            interval = 1.0 if name == "naive 1 s" else 0.1
            learned, errors = await wait_naively(wb, ids, interval, bound)
            records = None
        ended = time.time()
        client_cpu = cpu_seconds() - client_cpu
        server_cpu = emu.cpu() - server_cpu
        after = emu.stats()
        light_read = full_read = None
        if name == "wait_all":  # (outside the counts above)
            light_read, full_read = await time_reads(wb, ids)
    running = emu.running_walls(ids)
    get_session = after.get("workbench.get_session", 0) - before.get("workbench.get_session", 0)
    total = after.get("workbench", 0) - before.get("workbench", 0)
    # Sessions that started during the wait: the detection lag proper. Those already
    # running when it began can only be learned from then on: the first tick's cost.
    already = sum(1 for sid in ids if sid in running and running[sid] <= started)
    later = [learned[sid] - running[sid] for sid in learned if running.get(sid, 0) > started]
    before_lags = [
        learned[sid] - started for sid in learned if running.get(sid, math.inf) <= started
    ]
    complete = len(learned) == len(ids)
    last_learned = max(learned.values()) if learned else None
    slowest = max(running.values()) if running else None
    return {
        "name": name,
        "sessions": len(ids),
        "detected": len(learned),
        "complete": complete,
        "wall": (last_learned - started) if complete and last_learned else ended - started,
        "slowest_start": (slowest - started) if slowest else None,
        "over_slowest": (last_learned - slowest) if complete and last_learned and slowest else None,
        "get_session": get_session,
        "requests": total,
        "session_records": records if records is not None else get_session,
        "started": len(later),
        "lag_p50_ms": percentile(later, 50) * 1000 if later else None,
        "lag_p99_ms": percentile(later, 99) * 1000 if later else None,
        "lag_max_ms": max(later) * 1000 if later else None,
        "already_running": already,
        "already_lag_p50_ms": percentile(before_lags, 50) * 1000 if before_lags else None,
        "already_lag_p99_ms": percentile(before_lags, 99) * 1000 if before_lags else None,
        "already_lag_max_ms": max(before_lags) * 1000 if before_lags else None,
        "light_read_ms": light_read * 1000 if light_read is not None else None,
        "full_read_ms": full_read * 1000 if full_read is not None else None,
        "errors": errors,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--sessions", type=int, help="sessions per contender (default 1000)")
    parser.add_argument(
        "--bound",
        type=float,
        help="longest wait per contender, seconds (default 20, plus the start offset)",
    )
    parser.add_argument(
        "--start-offset",
        type=float,
        help="seconds added to every session's launching phase, so that sessions start "
        f"during the wait (default: 0 below {AUTO_OFFSET_FROM:,} sessions, else "
        f"sessions / {LAUNCH_RATE_FLOOR:g})",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(args_list)
    count = args.sessions or (40 if args.quick else 1000)
    offset = auto_offset(count) if args.start_offset is None else args.start_offset
    if offset < 0 or not math.isfinite(offset):
        parser.error(f"--start-offset must be a finite number >= 0, got {offset}")
    bound = args.bound or (8.0 if args.quick else 20.0) + offset
    base = QUICK_TIMINGS if args.quick else FULL_TIMINGS
    timings = offset_timings(base, offset)

    report = Report("bench_waits", args_list)
    results: list[dict[str, Any]] = []
    contenders = ("wait_all", "naive 1 s", "naive 0.1 s")
    if args.quick:
        # One emulator for all: starting three processes would cost more than the run.
        with EmulatorProcess(timings, seed=args.seed) as emu:
            for name in contenders:
                results.append(asyncio.run(run_contender(emu.url, emu, name, count, bound)))
    else:
        for name in contenders:
            with EmulatorProcess(timings, seed=args.seed) as emu:
                results.append(asyncio.run(run_contender(emu.url, emu, name, count, bound)))

    shift = f", start offset {offset:g} s" if offset else ""
    report.table(
        f"Waiting for {count:,} sessions to be running (start delay "
        f"U({_low(base)}, {_high(base)}) s{shift})",
        [
            "contender",
            "detected",
            "wall s",
            "slowest start s",
            "over slowest s",
            "get_session",
            "sessions read",
            "started",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "client CPU s",
            "server CPU s",
        ],
        [
            [
                r["name"],
                f"{r['detected']}/{r['sessions']}",
                r["wall"],
                r["slowest_start"],
                r["over_slowest"],
                r["get_session"],
                r["session_records"],
                r["started"],
                r["lag_p50_ms"],
                r["lag_p99_ms"],
                r["lag_max_ms"],
                r["client_cpu"],
                r["server_cpu"],
            ]
            for r in results
        ],
    )
    by = {r["name"]: r for r in results}
    wa, n1, n01 = by["wait_all"], by["naive 1 s"], by["naive 0.1 s"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    goal = targets_for(count)

    def target(key: str, text: str) -> str:
        limit = goal[key]
        return "" if limit is None else text.format(limit)

    report.table(
        "Ratios (wait_all / naive)",
        ["measure", "vs naive 1 s", "vs naive 0.1 s", "target"],
        [
            [
                "requests",
                shown(ratio(wa["get_session"], n1["get_session"])),
                shown(ratio(wa["get_session"], n01["get_session"])),
                target("requests", "<= {:g} of naive 1 s"),
            ],
            [
                "lag p99",
                shown(ratio(wa["lag_p99_ms"], n1["lag_p99_ms"])),
                shown(ratio(wa["lag_p99_ms"], n01["lag_p99_ms"])),
                target("lag_p99_ms", "wait_all p99 <= {:g} ms"),
            ],
            [
                "wall",
                shown(ratio(wa["wall"], n1["wall"])),
                shown(ratio(wa["wall"], n01["wall"])),
                target("over_slowest", "wait_all <= slowest + {:g} s"),
            ],
            [
                "client CPU",
                shown(ratio(wa["client_cpu"], n1["client_cpu"])),
                shown(ratio(wa["client_cpu"], n01["client_cpu"])),
                target("client_cpu", "<= {:g}x naive 1 s"),
            ],
        ],
    )
    # (After the ratios: the tables before them keep their places.)
    if any(r["already_running"] for r in results):
        report.table(
            "Sessions already running when the wait began (lag from the start of the wait)",
            ["contender", "already running", "lag p50 ms", "lag p99 ms", "lag max ms"],
            [
                [
                    r["name"],
                    r["already_running"],
                    r["already_lag_p50_ms"],
                    r["already_lag_p99_ms"],
                    r["already_lag_max_ms"],
                ]
                for r in results
            ],
        )
    requests = ratio(wa["get_session"], n1["get_session"])
    cpu = ratio(wa["client_cpu"], n1["client_cpu"])
    reads_ms = wa["light_read_ms"] + wa["full_read_ms"]
    report.note(
        f"wait_all's client, after its wait: one light read of the {count:,} sessions "
        f"{wa['light_read_ms']:.0f} ms, one full read {wa['full_read_ms']:.0f} ms"
    )
    first_tick = None
    if wa["already_running"]:
        # What the first tick over the sessions already running took beyond the two reads.
        first_tick = (wa["already_lag_p99_ms"] - reads_ms) / (count / 1000)
    checks = [
        ("requests", "requests <= {:.0%} of naive 1 s", requests),
        ("lag_p99_ms", "lag p99 <= {:g} ms", wa["lag_p99_ms"]),
        ("over_slowest", "wall <= slowest start + {:g} s", wa["over_slowest"]),
        ("client_cpu", "client CPU <= {:g}x naive 1 s", cpu),
    ]
    if first_tick is not None:
        checks.append(
            (
                "first_tick_ms_per_1000",
                "already running: lag p99 <= light + full read + {:g} ms per 1,000 sessions",
                first_tick,
            )
        )
    for key, label, value in checks:
        limit = goal[key]
        if limit is None:
            continue
        verdict = "met" if value is not None and value <= limit else "MISSED"
        shown_value = value if value is None else round(value, 3)
        report.note(f"target {label.format(limit)}: {verdict} ({shown_value})")
    if args.quick:
        report.note("(--quick: the targets are meant for runs of 1,000 and 10,000 sessions)")
    for r in results:
        if not r["complete"]:
            report.note(
                f"{r['name']}: only {r['detected']} of {r['sessions']} sessions detected "
                f"within the {bound:g} s bound"
            )
        if r["errors"]:
            report.note(f"{r['name']}: {r['errors']} reads failed (and were retried)")
    if not n1["complete"]:
        report.note(
            "naive 1 s did not finish: its requests and CPU are those of a partial run, "
            "so the ratios against it are larger than against a finished one"
        )
    report.note(
        "'sessions read' counts session records in the answers (wait_all asks for many ids "
        "per request; its poller's counter). Lags of the sessions 'started' during the wait: "
        "client time.time() minus the emulator's recorded wall time of entering 'running'; "
        "the lag p99 target applies to these."
    )
    report.values = {"results": results, "count": count, "bound": bound, "offset": offset}
    report.emit(json_path=args.json, markdown=args.markdown)


def _low(timings: dict[str, Any]) -> str:
    low = timings["session_launch_delay"][0]
    return f"{low + timings['session_pending_delay'] + timings['session_starting_delay']:g}"


def _high(timings: dict[str, Any]) -> str:
    high = timings["session_launch_delay"][1]
    return f"{high + timings['session_pending_delay'] + timings['session_starting_delay']:g}"


if __name__ == "__main__":
    main()
