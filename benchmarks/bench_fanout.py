"""Benchmark: 2,000 Workbench reads through ``aiocompute.fan_out``, raw aiohttp, and a loop.

Run from the repository root::

    python -m benchmarks.bench_fanout            # full run (under a minute)
    python -m benchmarks.bench_fanout --quick    # tiny sizes, a few seconds

The read is ``wb.sessions.get(id)`` (``POST /api/get_session`` for one id) over 20 running
sessions, round robin: what a fan-out over existing resources does, and cheap for the
server (a dict lookup and one session's JSON). The emulator runs in its own process.

Part A, no added latency: the SDK's own cost.

* ``fan_out``: ``aiocompute.fan_out(wb.sessions.get, ids, concurrency=C)``: the SDK's
  request building, transport (retry driver, error mapping), envelope check and typed
  ``Session`` model per read;
* ``raw aiohttp``: ``asyncio.gather`` over the same reads, a semaphore of C, the same
  request bodies and auth header, one ``aiohttp.ClientSession`` with the same pool (100
  connections), JSON parsed with ``resp.json()``;
* two hybrids to tell where a difference comes from: ``gather + wb.sessions.get`` (the
  SDK client without fan_out) and ``fan_out + raw read`` (fan_out's engine, raw reads).

Each contender first reads 100 times (warm-up, connections opened), then the rounds
alternate between contenders; the table gives the median round. The client's CPU time per
read is reported too: with one core each, the server may bound both contenders' throughput,
while CPU per read shows what the SDK itself costs.

Part B, the emulator adds 20 ms to every request (``FaultConfig.latency``): ``fan_out`` at
C = 32 and C = 100 over all reads, against a sequential blocking loop (``http.client``, one
kept-alive connection, ``json.loads``) over a subset (200 reads: the full 2,000 would take
40 s and tell nothing more). Throughputs are per read, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from aiocompute import WorkbenchClient, fan_out
from aiocompute.workbench.models import Session

from ._common import TOKEN, EmulatorProcess, Report, add_common_args, cpu_seconds

#: Sessions start at once, so every read finds them running.
TIMINGS = {
    "session_launch_delay": 0,
    "session_pending_delay": 0,
    "session_starting_delay": 0,
}
SESSIONS = 20
#: Warm-up reads per contender (connections opened, code paths warm); fewer with --quick.
WARMUP = 100
QUICK_WARMUP = 20
#: Connections in the pool of both async contenders (the SDK's default PoolLimits).
POOL = 100


def body_for(session_id: str) -> dict[str, Any]:
    """The JSON body ``wb.sessions.get`` sends."""
    return {"method": "get_session", "kwparams": {"session_id": session_id}}


async def run_sdk(wb: WorkbenchClient, items: list[str], concurrency: int) -> int:
    """fan_out over ``wb.sessions.get``; the number of reads that succeeded."""
    result = await fan_out(wb.sessions.get, items, concurrency=concurrency)
    if result.failed:
        raise RuntimeError(f"fan_out: {result.failed} reads failed: {result.errors[0][1]!r}")
    return result.succeeded


async def run_raw(
    session: aiohttp.ClientSession, url: str, items: list[str], concurrency: int
) -> int:
    """asyncio.gather with a semaphore, the same bodies; the number of reads that succeeded."""
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    endpoint = url + "/api/get_session"

    async def read(session_id: str) -> dict[str, Any]:
        async with sem, session.post(endpoint, json=body_for(session_id), headers=headers) as r:
            r.raise_for_status()
            data: dict[str, Any] = await r.json()
        return data["result"]["sessions"][0]  # type: ignore[no-any-return]

    found = await asyncio.gather(*(read(i) for i in items))
    return len(found)


def run_sequential(url: str, items: list[str]) -> int:
    """A plain blocking loop: http.client on one kept-alive connection, json.loads."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    path = parts.path + "/api/get_session"
    done = 0
    try:
        for session_id in items:
            conn.request("POST", path, body=json.dumps(body_for(session_id)), headers=headers)
            response = conn.getresponse()
            data = json.loads(response.read())
            if response.status != 200 or not data["result"]["sessions"]:
                raise RuntimeError(f"unexpected answer: HTTP {response.status}")
            done += 1
    finally:
        conn.close()
    return done


async def timed_round(run: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """One round: reads/s and client CPU milliseconds per read."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    done = await run()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {"reads": done, "seconds": elapsed, "rps": done / elapsed, "cpu_ms": cpu / done * 1e3}


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round of median throughput (with the spread of all rounds)."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rps_min"] = ordered[0]["rps"]
    chosen["rps_max"] = ordered[-1]["rps"]
    chosen["cpu_ms_median"] = statistics.median(r["cpu_ms"] for r in rounds)
    return chosen


async def run_sdk_gather(wb: WorkbenchClient, items: list[str], concurrency: int) -> int:
    """asyncio.gather with a semaphore over ``wb.sessions.get`` (the SDK client, no fan_out)."""
    sem = asyncio.Semaphore(concurrency)

    async def read(session_id: str) -> Session:
        async with sem:
            return await wb.sessions.get(session_id)

    found = await asyncio.gather(*(read(i) for i in items))
    return len(found)


async def run_fanout_raw(
    session: aiohttp.ClientSession, url: str, items: list[str], concurrency: int
) -> int:
    """fan_out over the raw aiohttp read (fan_out's engine, no SDK client)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    endpoint = url + "/api/get_session"

    async def read(session_id: str) -> dict[str, Any]:
        async with session.post(endpoint, json=body_for(session_id), headers=headers) as r:
            r.raise_for_status()
            data: dict[str, Any] = await r.json()
        return data["result"]["sessions"][0]  # type: ignore[no-any-return]

    result = await fan_out(read, items, concurrency=concurrency)
    if result.failed:
        raise RuntimeError(f"fan_out: {result.failed} reads failed: {result.errors[0][1]!r}")
    return result.succeeded


#: Part A's contenders: the SDK, the raw baseline, and two hybrids that split the difference
#: between fan_out's engine and the SDK client.
CONTENDERS_A = ("fan_out", "raw aiohttp", "gather + wb.sessions.get", "fan_out + raw read")


async def part_a(
    url: str,
    emu: EmulatorProcess,
    ids: list[str],
    reads: int,
    concurrency: int,
    rounds: int,
    warmup: int = WARMUP,
) -> dict[str, Any]:
    """fan_out vs raw aiohttp (and the hybrids), no added latency."""
    items = [ids[i % len(ids)] for i in range(reads)]
    out: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS_A}
    server: dict[str, float] = dict.fromkeys(CONTENDERS_A, 0.0)
    connector = aiohttp.TCPConnector(limit=POOL)
    async with (
        WorkbenchClient(url, token=TOKEN) as wb,
        aiohttp.ClientSession(connector=connector) as raw,
    ):
        runs: dict[str, Callable[[list[str]], Awaitable[int]]] = {
            "fan_out": lambda xs: run_sdk(wb, xs, concurrency),
            "raw aiohttp": lambda xs: run_raw(raw, url, xs, concurrency),
            "gather + wb.sessions.get": lambda xs: run_sdk_gather(wb, xs, concurrency),
            "fan_out + raw read": lambda xs: run_fanout_raw(raw, url, xs, concurrency),
        }
        for run in runs.values():
            await run(items[:warmup])
        for index in range(rounds):
            # Rotate the order so that no contender always runs first (or last).
            shift = index % len(CONTENDERS_A)
            order = CONTENDERS_A[shift:] + CONTENDERS_A[:shift]
            for name in order:
                before = emu.cpu()
                result = await timed_round(lambda name=name: runs[name](items))  # type: ignore[misc]
                server[name] += emu.cpu() - before
                out[name].append(result)
    summary = {name: median_round(rs) for name, rs in out.items()}
    for name in summary:
        summary[name]["server_cpu_ms"] = server[name] / (rounds * reads) * 1e3
    return {"rounds": out, "summary": summary}


async def part_b(
    url: str, emu: EmulatorProcess, ids: list[str], reads: int, subset: int, warmup: int = WARMUP
) -> dict[str, Any]:
    """fan_out vs a sequential loop, 20 ms added per request."""
    items = [ids[i % len(ids)] for i in range(reads)]
    emu.set_latency({"workbench": 0.02})
    results: dict[str, dict[str, float]] = {}
    try:
        async with WorkbenchClient(url, token=TOKEN) as wb:
            await run_sdk(wb, items[:warmup], 32)
            for concurrency in (32, 100):
                results[f"fan_out C={concurrency}"] = await timed_round(
                    lambda c=concurrency: run_sdk(wb, items, c)  # type: ignore[misc]
                )
        t0 = time.perf_counter()
        done = await asyncio.to_thread(run_sequential, url, items[:subset])
        elapsed = time.perf_counter() - t0
        results["sequential loop"] = {"reads": done, "seconds": elapsed, "rps": done / elapsed}
    finally:
        emu.set_latency({})
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--reads", type=int, help="reads per contender (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="C of part A (default 32)")
    parser.add_argument("--rounds", type=int, help="timed rounds per contender, part A")
    parser.add_argument("--subset", type=int, help="reads of the sequential loop (default 200)")
    args = parser.parse_args(args_list)
    reads = args.reads or (200 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 5)
    subset = args.subset or (10 if args.quick else 200)
    warmup = QUICK_WARMUP if args.quick else WARMUP
    concurrency = args.concurrency

    async def run(emu: EmulatorProcess) -> tuple[dict[str, Any], dict[str, Any]]:
        async with WorkbenchClient(emu.url, token=TOKEN) as wb:
            launched = [
                await wb.sessions.launch(
                    "VS Code", name=f"s{i}", launch_parameters={"name": f"s{i}", "cluster": "Local"}
                )
                for i in range(SESSIONS)
            ]
        ids = [s.id for s in launched]
        a = await part_a(emu.url, emu, ids, reads, concurrency, rounds, warmup)
        b = await part_b(emu.url, emu, ids, reads, subset, warmup)
        return a, b

    with EmulatorProcess(TIMINGS, seed=3) as emu:
        a, b = asyncio.run(run(emu))

    report = Report("bench_fanout", args_list)
    sa = a["summary"]
    fo, raw = sa["fan_out"], sa["raw aiohttp"]
    report.table(
        f"A. {reads:,} reads, no added latency, concurrency {concurrency} "
        f"(median of {rounds} rounds)",
        [
            "contender",
            "reads/s",
            "min-max reads/s",
            "client CPU ms/read",
            "server CPU ms/read",
            "vs raw aiohttp",
        ],
        [
            [
                name,
                r["rps"],
                f"{r['rps_min']:,.0f}-{r['rps_max']:,.0f}",
                f"{r['cpu_ms_median']:.3f}",
                f"{r['server_cpu_ms']:.3f}",
                f"{r['rps'] / raw['rps']:.2f}x",
            ]
            for name, r in sa.items()
        ],
    )
    seq = b["sequential loop"]
    report.table(
        f"B. 20 ms added per request: fan_out over {reads:,} reads, the sequential loop over "
        f"{seq['reads']:,}",
        ["contender", "reads", "seconds", "reads/s", "vs sequential"],
        [
            [name, int(r["reads"]), r["seconds"], r["rps"], f"{r['rps'] / seq['rps']:.1f}x"]
            for name, r in b.items()
        ],
    )
    throughput_ratio = fo["rps"] / raw["rps"]
    cpu_ratio = fo["cpu_ms_median"] / raw["cpu_ms_median"]
    speedup = b["fan_out C=32"]["rps"] / seq["rps"]
    verdict_a = "met" if throughput_ratio >= 0.85 else "MISSED"
    verdict_b = "met" if speedup >= 20 else "MISSED"
    report.note(
        f"target A, fan_out >= 0.85x raw aiohttp throughput: {verdict_a} "
        f"({throughput_ratio:.2f}x; client CPU per read {cpu_ratio:.2f}x raw's)"
    )
    report.note(
        f"target B, fan_out (C=32) >= 20x the sequential loop: {verdict_b} ({speedup:.1f}x)"
    )
    report.note(
        "The sequential loop ran on a subset; its reads/s is per read, like the others'. "
        "Ideal at 20 ms per request: 50 reads/s sequential, C x 50 reads/s with C in flight."
    )
    report.values = {
        "part_a": a,
        "part_b": b,
        "throughput_ratio": throughput_ratio,
        "cpu_ratio": cpu_ratio,
        "speedup": speedup,
    }
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
