"""Benchmark: what a sync twin call costs over its async twin.

Run from the repository root::

    python -m benchmarks.bench_sync            # 2,000 calls per contender (about 10 s)
    python -m benchmarks.bench_sync --quick    # 200 calls, a second or two

Every case runs the async and the sync contender side by side in one run, interleaved in
rounds (async batch, sync batch, async batch...) so that drift in the machine's load hits
both alike. Per-call figures are medians over the rounds; the overhead is the median of the
per-round differences (sync minus async).

1. ``version()`` against the emulator (in its own process, see ``benchmarks/_common.py``):
   ``await wb.version()`` on an async client driven by this thread's event loop, against
   ``wb.version()`` on a sync client (whose own loop thread does the HTTP).
2. A no-I/O coroutine (``async def noop(): pass``): awaited directly, against the sync
   runner's ``call`` (the exact path of every generated ``call`` twin, without the HTTP):
   this is the cost of the hop to the loop thread and back alone.
3. A plain method (``jobs.wait_token(...)``: no I/O, no await): called directly on the async
   resource, against its sync twin (which runs it in the loop thread).
4. Items of an async generator (no I/O): ``async for`` against iterating the
   :class:`~aiocompute.sync.SyncIterator` (one hop per item).
5. The no-I/O coroutine of case 2 handed over by anyio's ``BlockingPortal.call`` on the
   same loop thread instead: the road the sync layer did not take (the portal spawns each
   task through a blocking round trip to the loop thread, then waits for its result).

``overhead`` is (sync - async) per call in microseconds; ``ratio`` is sync / async. The
target for the sync layer is an overhead of at most 150 us per call. On a shared 2-core
machine the HTTP case is noisy (three busy threads and processes on two cores): the no-I/O
case is the portal's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiocompute import sync
from aiocompute.workbench import WorkbenchClient

from ._common import TOKEN, EmulatorProcess, Report, add_common_args

#: The target: a sync call costs at most this much more than its async twin.
TARGET_US = 150.0


async def _noop() -> None:
    pass


async def _numbers(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


class Case:
    """One side-by-side comparison, measured in interleaved rounds of ``calls`` calls each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.async_rounds: list[float] = []  # seconds per call, one value per round
        self.sync_rounds: list[float] = []
        self.calls = 0

    def add(self, async_seconds: float, sync_seconds: float, calls: int) -> None:
        self.async_rounds.append(async_seconds / calls)
        self.sync_rounds.append(sync_seconds / calls)
        self.calls += calls

    def values(self) -> dict[str, float]:
        """Medians over the rounds (robust to a round hit by other work on the machine);
        the overhead is the median of the per-round differences (each pair of batches ran
        back to back, so slow drift in the machine's load cancels out)."""
        a = statistics.median(self.async_rounds) * 1e6
        s = statistics.median(self.sync_rounds) * 1e6
        diffs = [(y - x) * 1e6 for x, y in zip(self.async_rounds, self.sync_rounds, strict=True)]
        return {
            "calls": self.calls,
            "async_us": a,
            "sync_us": s,
            "overhead_us": statistics.median(diffs),
            "ratio": s / a if a else float("nan"),
            "async_mean_us": statistics.fmean(self.async_rounds) * 1e6,
            "sync_mean_us": statistics.fmean(self.sync_rounds) * 1e6,
        }

    def row(self) -> list[Any]:
        v = self.values()
        return [self.name, self.calls, v["async_us"], v["sync_us"], v["overhead_us"], v["ratio"]]


def _timed_async(loop: asyncio.AbstractEventLoop, batch: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    loop.run_until_complete(batch())
    return time.perf_counter() - started


def _timed_sync(batch: Callable[[], None]) -> float:
    started = time.perf_counter()
    batch()
    return time.perf_counter() - started


def run(url: str, calls: int, rounds: int) -> list[Case]:
    """Measure every case; ``calls`` per contender per case, split into ``rounds``."""
    per_round = max(1, calls // rounds)
    loop = asyncio.new_event_loop()
    cases = {
        "version": Case("version() over HTTP"),
        "noop": Case("no-I/O coroutine"),
        "plain": Case("plain method (wait_token)"),
        "items": Case("async generator item"),
        "portal": Case("no-I/O coroutine, anyio portal"),
    }
    try:
        async_wb = WorkbenchClient(url, token=TOKEN)
        with sync.WorkbenchClient(url, token=TOKEN) as sync_wb:
            runner = sync_wb._runner

            async def async_version() -> None:
                for _ in range(per_round):
                    await async_wb.version()

            def sync_version() -> None:
                for _ in range(per_round):
                    sync_wb.version()

            async def async_noop() -> None:
                for _ in range(per_round):
                    await _noop()

            def sync_noop() -> None:
                for _ in range(per_round):
                    runner.call(_noop)

            async def async_plain() -> None:
                for _ in range(per_round):
                    async_wb.jobs.wait_token(["j1", "j2"])

            def sync_plain() -> None:
                for _ in range(per_round):
                    sync_wb.jobs.wait_token(["j1", "j2"])

            async def async_items() -> None:
                async for _ in _numbers(per_round):
                    pass

            def sync_items() -> None:
                for _ in runner.iterate(_numbers, per_round):
                    pass

            def portal_noop() -> None:
                for _ in range(per_round):
                    runner._portal.call(_noop)

            contenders = {
                "version": (async_version, sync_version),
                "noop": (async_noop, sync_noop),
                "plain": (async_plain, sync_plain),
                "items": (async_items, sync_items),
                "portal": (async_noop, portal_noop),
            }
            # Warm up both sides (connections opened, code paths hot).
            loop.run_until_complete(async_wb.version())
            sync_wb.version()
            for _ in range(rounds):
                for key, (async_batch, sync_batch) in contenders.items():
                    async_seconds = _timed_async(loop, async_batch)
                    sync_seconds = _timed_sync(sync_batch)
                    cases[key].add(async_seconds, sync_seconds, per_round)
        loop.run_until_complete(async_wb.aclose())
    finally:
        loop.close()
    return list(cases.values())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("-n", "--calls", type=int, default=None, help="calls per contender")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    args = parser.parse_args(args_list)
    calls = args.calls or (200 if args.quick else 2000)
    report = Report("bench_sync", args_list)
    with EmulatorProcess(seed=1) as emu:
        cases = run(emu.url, calls, max(1, args.rounds))
    report.table(
        "Sync twin against async twin, per call (microseconds)",
        ["case", "calls", "async us", "sync us", "overhead us", "ratio"],
        [c.row() for c in cases],
    )
    report.values = {c.name: c.values() for c in cases}
    worst = max(c.values()["overhead_us"] for c in cases[:2])
    verdict = "met" if worst <= TARGET_US else "NOT met"
    report.values["target_us"] = TARGET_US
    report.values["target_met"] = worst <= TARGET_US
    report.note(
        f"Target: overhead <= {TARGET_US:.0f} us per call (version() and the no-I/O call): "
        f"{verdict} (worst {worst:.1f} us)."
    )
    portal = cases[4].values()["overhead_us"] - cases[1].values()["overhead_us"]
    report.note(
        f"anyio's BlockingPortal.call instead of the sync runner's own hand-off: "
        f"{portal:+.1f} us per call (it spawns each task through a blocking round trip)."
    )
    report.note(
        "The emulator runs in its own process; the sync client's loop thread shares this "
        "process's GIL with the calling thread, so each sync call costs two thread hand-offs."
    )
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
