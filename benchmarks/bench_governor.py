"""Benchmark: the rate governor under a server limit that appears and lifts mid-run.

Run from the repository root::

    python -m benchmarks.bench_governor            # 3 contenders, about 4 minutes
    python -m benchmarks.bench_governor --quick    # short phases, about 25 s

A local aiohttp server (in its own process, so that it does not share the client's event
loop and core) answers ET Engine's ``GET /v1/batches/<id>/jobs`` with ``[]`` after
``--latency`` (50 ms, a network's round trip). Its limit is a token bucket of ``R``
requests/s (``--limit``, 20) holding ``R`` tokens (a burst of one second; ``--burst``
sets it in seconds of the limit); a request that finds it empty is answered 429 with
``Retry-After``: the seconds until the next token, rounded up to whole seconds as HTTP's
delta-seconds are (``--retry-after exact`` sends the fraction instead). The limit is off
for the first phase, appears, and lifts again.

Fifty client tasks (concurrency 50) read in a loop through one ``ETEngineClient`` with the
SDK's default retry policy (a 429 is retried after its Retry-After, four tries in all).
Contenders, one after the other against a reset server:

* ``RateGovernor()``: the client's default governor (this release's law);
* ``old law``: the same class with the law it had before (an additive step on every
  answer that is not a 429, a cut at most once per ``decrease_window``, factor 0.5), kept
  here as a subclass for comparison;
* ``no governor``: a governor that never paces (only the retry policy's backoff).

Figures, from the server's own record of every request (wall time and status):

* ``full /s``: reads/s answered 200 in the unlimited phase (its first second left out);
* ``goodput/R``: reads/s answered 200 over R, from 10 s after the limit appeared until it
  lifted (the steady part), and ``429 %`` the share of requests answered 429 in it;
* ``429 % all``: the same share over the whole limited phase, the first seconds included
  (the requests in flight when the limit appeared are answered 429 whatever the law);
* ``settle s``: seconds from the limit appearing until every 5-second window up to the
  lift (sliding by 0.5 s) has a goodput >= 0.8 R and <= 5 % of its requests answered 429
  (a whole-second Retry-After pauses the client for a second now and then, so shorter
  windows dip even when the average is steady);
* ``recover s``: seconds from the lift until a 1-second window reaches 0.9 of full speed;
* ``failed``: reads that raised (a 429 four times over).

Goal: goodput >= 0.9 R with <= 3 % of requests answered 429, steady within 10 s of the
limit appearing, back to full speed within 30 s of it lifting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web

from aiocompute import AioComputeError, ETEngineClient, RateGovernor
from aiocompute._core.governor import Governor

from ._common import Report, add_common_args

CONCURRENCY = 50
#: Bins of the server's record, in seconds.
BIN = 0.1
#: Steady: every window of this many seconds has goodput >= 0.8 R and <= 5 % answered 429.
SETTLE_WINDOW = 5.0


# --------------------------------------------------------------------------------------------
# The server (child process)


class LimitedServer:
    """Answers ``[]`` after ``latency``; with a limit on, a token bucket of ``rate``/s
    holding ``rate`` tokens refuses with 429 + Retry-After. Records (time, status) in bins."""

    def __init__(self, latency: float, whole_seconds: bool, burst: float) -> None:
        self.latency = latency
        self.whole_seconds = whole_seconds
        self.burst = burst  # seconds' worth of the limit
        self.rate: float | None = None
        self.tokens = 0.0
        self.refilled_at = 0.0
        self.bins: dict[int, list[int]] = {}

    def capacity(self) -> float:
        return max(1.0, (self.rate or 0.0) * self.burst)

    def set_limit(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = self.capacity()
        self.refilled_at = time.monotonic()

    def _record(self, status: int) -> None:
        counts = self.bins.setdefault(int(time.time() / BIN), [0, 0])
        counts[0 if status == 200 else 1] += 1

    async def jobs(self, _request: web.Request) -> web.Response:
        if self.rate is not None:
            now = time.monotonic()
            self.tokens = min(self.capacity(), self.tokens + (now - self.refilled_at) * self.rate)
            self.refilled_at = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.rate
                hint = str(math.ceil(wait)) if self.whole_seconds else f"{wait + 0.005:.2f}"
                self._record(429)
                await asyncio.sleep(self.latency)
                return web.json_response(
                    {"message": "rate limit exceeded"}, status=429, headers={"Retry-After": hint}
                )
            self.tokens -= 1
        self._record(200)
        await asyncio.sleep(self.latency)
        return web.json_response([])

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("reset"):
            self.bins.clear()
        self.set_limit(body.get("rate"))
        return web.json_response({"ok": True})

    async def record(self, _request: web.Request) -> web.Response:
        return web.json_response({str(k): v for k, v in self.bins.items()})


async def _serve(latency: float, whole_seconds: bool, burst: float) -> None:
    server = LimitedServer(latency, whole_seconds, burst)
    app = web.Application()
    app.router.add_get("/v1/batches/{batch_id}/jobs", server.jobs)
    app.router.add_post("/_control", server.control)
    app.router.add_get("/_record", server.record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.readline)  # until the parent goes
    finally:
        await runner.cleanup()


class ServerProcess:
    """The server in a child process: ``python -m benchmarks.bench_governor --serve ...``."""

    def __init__(self, latency: float, whole_seconds: bool, burst: float) -> None:
        self._args = ["--serve", str(latency), "whole" if whole_seconds else "exact", str(burst)]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_governor", *self._args],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], 60)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self._proc.kill()
            raise RuntimeError("the limited server did not start within 60 s")
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------------------------
# Contenders


class OldLawGovernor(RateGovernor):
    """The law before this release, for comparison: every answer that is not a 429 adds
    ``increase``; 429s within ``decrease_window`` of the last cut count as one; factor 0.5."""

    def __init__(self) -> None:
        super().__init__(decrease_factor=0.5)

    def _cut(self, now: float, started: float | None) -> None:
        if self._last_decrease is not None and now - self._last_decrease < self._decrease_window:
            return
        self._last_decrease = now
        self._decreases += 1
        if self._rate is None:
            new = self._measured_rate(now) * self._decrease_factor
            self._recent.clear()
            self._tokens = 0.0
            self._refilled_at = now
        else:
            self._refill(now)
            new = self._rate * self._decrease_factor
        self._rate = self._clamp(new)

    def _grow(self, now: float) -> None:
        if self._rate is None:
            return
        if (
            self._can_unlimit
            and self._last_throttle is not None
            and now - self._last_throttle >= cast(float, self._recover_after)
        ):
            self._rate = None
            self._recent.clear()
            return
        if self._max_rate is not None and self._rate >= self._max_rate:
            return
        self._refill(now)
        self._rate = self._clamp(self._rate + self._increase)
        self._increases += 1


class NoGovernor:
    """Never paces, learns nothing."""

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        return nullcontext()

    def feedback(self, status: int | None, retry_after: float | None) -> None:
        return None


CONTENDERS: dict[str, type[Any]] = {
    "RateGovernor()": RateGovernor,
    "old law": OldLawGovernor,
    "no governor": NoGovernor,
}


# --------------------------------------------------------------------------------------------
# One run


@contextlib.asynccontextmanager
async def _control(url: str) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession(base_url=url) as session:

        async def call(**body: Any) -> None:
            async with session.post("/_control", json=body) as response:
                response.raise_for_status()

        yield call


async def _record(url: str) -> dict[int, list[int]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/_record") as response,
    ):
        data = await response.json()
    return {int(k): v for k, v in data.items()}


async def run_one(
    url: str, governor: Governor, limit: float, phases: tuple[float, float, float]
) -> dict[str, Any]:
    """Read in a loop with 50 tasks through the phases (unlimited, limited, lifted); return
    the server's record and the phase times (wall clock)."""
    unlimited, limited, lifted = phases
    failed = 0
    stop = asyncio.Event()
    async with (
        _control(url) as control,
        ETEngineClient(api_key="k" * 8, base_url=f"{url}/v1", governor=governor) as et,
    ):
        await control(rate=None, reset=True)

        async def reader(index: int) -> None:
            nonlocal failed
            while not stop.is_set():
                try:
                    await et.jobs.list(f"b-{index}")
                except AioComputeError:
                    failed += 1

        tasks = [asyncio.create_task(reader(i)) for i in range(CONCURRENCY)]
        try:
            start = time.time()
            await asyncio.sleep(unlimited)
            await control(rate=limit)
            appeared = time.time()
            await asyncio.sleep(limited)
            await control(rate=None)
            gone = time.time()
            await asyncio.sleep(lifted)
            end = time.time()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "bins": await _record(url),
        "start": start,
        "appeared": appeared,
        "lifted": gone,
        "end": end,
        "failed": failed,
    }


def _counts(bins: dict[int, list[int]], start: float, end: float) -> tuple[int, int]:
    """(200s, 429s) in the bins that begin in ``[start, end)``."""
    ok = throttled = 0
    for index in range(math.ceil(start / BIN), math.ceil(end / BIN)):
        counts = bins.get(index)
        if counts is not None:
            ok += counts[0]
            throttled += counts[1]
    return ok, throttled


def _share(ok: int, throttled: int) -> float:
    return throttled / (ok + throttled) if ok + throttled else math.nan


def analyse(run: dict[str, Any], limit: float, steady_after: float = 10.0) -> dict[str, Any]:
    """The figures of one run (see the module docstring); the steady part starts
    ``steady_after`` seconds after the limit appeared."""
    bins, appeared, lifted = run["bins"], run["appeared"], run["lifted"]
    ok, _ = _counts(bins, run["start"] + 1, appeared)
    full = ok / (appeared - run["start"] - 1)
    steady_from = min(appeared + steady_after, lifted)
    ok, throttled = _counts(bins, steady_from, lifted)
    goodput = ok / (lifted - steady_from) / limit if lifted > steady_from else math.nan
    ok_all, throttled_all = _counts(bins, appeared, lifted)

    settle = math.nan
    t = appeared
    window = min(SETTLE_WINDOW, lifted - appeared)
    while t + window <= lifted:
        if all(_steady(bins, s, window, limit) for s in _grid(t, lifted - window)):
            settle = t - appeared
            break
        t += 0.5

    recover = math.nan
    for s in _grid(lifted, run["end"] - 1):
        if _counts(bins, s, s + 1)[0] >= 0.9 * full:
            recover = s + 1 - lifted
            break
    series = [_counts(bins, s, s + 1) for s in _grid(appeared - 2, run["end"] - 1, step=1.0)]
    return {
        "full": full,
        "goodput_over_r": goodput,
        "share_429": _share(ok, throttled),
        "share_429_all": _share(ok_all, throttled_all),
        "throttled_all": throttled_all,
        "settle_s": settle,
        "recover_s": recover,
        "failed": run["failed"],
        # (200s, 429s) per second from 2 s before the limit appeared to the end.
        "per_second": series,
    }


def _steady(bins: dict[int, list[int]], start: float, window: float, limit: float) -> bool:
    ok, throttled = _counts(bins, start, start + window)
    return ok >= 0.8 * limit * window and _share(ok, throttled) <= 0.05


def _grid(start: float, end: float, step: float = 0.5) -> list[float]:
    return [start + i * step for i in range(int((end - start) / step) + 1)]


async def run(
    limit: float,
    latency: float,
    whole_seconds: bool,
    phases: tuple[float, float, float],
    steady_after: float,
    burst: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """Every contender against a fresh server state."""
    results: dict[str, dict[str, Any]] = {}
    with ServerProcess(latency, whole_seconds, burst) as server:
        for name, make in CONTENDERS.items():
            raw = await run_one(server.url, make(), limit, phases)
            results[name] = analyse(raw, limit, steady_after)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--limit", type=float, default=20.0, help="server limit R, requests/s")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency, seconds")
    parser.add_argument("--retry-after", choices=["whole", "exact"], default="whole")
    parser.add_argument(
        "--burst", type=float, default=1.0, help="server bucket, in seconds of the limit"
    )
    args = parser.parse_args(args_list)
    # --quick: phases too short to settle or recover; it shows the script runs.
    phases = (1.5, 4.0, 2.0) if args.quick else (6.0, 40.0, 34.0)
    steady_after = 2.0 if args.quick else 10.0
    report = Report("bench_governor", args_list)
    results = asyncio.run(
        run(
            args.limit,
            args.latency,
            args.retry_after == "whole",
            phases,
            steady_after,
            args.burst,
        )
    )
    columns = [
        "contender",
        "full /s",
        "goodput/R",
        "429 %",
        "429 % all",
        "settle s",
        "recover s",
        "failed",
    ]
    rows = [
        [
            name,
            r["full"],
            r["goodput_over_r"],
            100 * r["share_429"],
            100 * r["share_429_all"],
            r["settle_s"],
            r["recover_s"],
            r["failed"],
        ]
        for name, r in results.items()
    ]
    unlimited, limited, lifted = phases
    report.table(
        f"Server limit R = {args.limit:g}/s appearing after {unlimited:g} s for {limited:g} s, "
        f"then lifted for {lifted:g} s; concurrency {CONCURRENCY}, latency "
        f"{args.latency * 1000:g} ms, burst {args.burst:g} s, Retry-After {args.retry_after}",
        columns,
        rows,
    )
    report.values = {
        "limit": args.limit,
        "phases": list(phases),
        "results": results,
    }
    report.note(
        f"goodput/R and 429 % from {steady_after:g} s after the limit appeared until it lifted;"
    )
    report.note("429 % all over the whole limited phase (the requests in flight when it")
    report.note("appeared included). n/a: never settled / never recovered within the phase.")
    report.note("Goal: goodput >= 0.9 R, <= 3 % answered 429, settle <= 10 s, recover <= 30 s.")
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        asyncio.run(_serve(float(sys.argv[2]), sys.argv[3] == "whole", float(sys.argv[4])))
    else:
        main()
