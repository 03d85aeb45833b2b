"""Benchmark: 2,000 ET Engine job reads through ``aiocompute.fan_out``, raw aiohttp, and a loop.

Run from the repository root::

    python -m benchmarks.bench_fanout            # full run (about a minute)
    python -m benchmarks.bench_fanout --quick    # tiny sizes, a few seconds

The primary read is ``et.jobs.get(batch_id, job_id)`` (``GET /batches/<id>/jobs/<job_id>``)
of the ET Engine client: 20 batches of 100 jobs are created on the emulator (in its own
process), the script waits until every batch has succeeded and lists its jobs, then each
timed round reads each of the 2,000 jobs once. That is what a fan-out over the jobs of a
sweep does, and it is cheap for the server (two dict lookups and one job's JSON).

Part A, no added latency: the SDK's own cost.

* ``fan_out``: ``aiocompute.fan_out(read, jobs, concurrency=C)`` where ``read`` is
  ``lambda pair: et.jobs.get(*pair)``: the SDK's request building, transport (rate
  governor, retry driver, error mapping), answer check and typed ``BatchJob`` model per
  read;
* ``raw aiohttp``: ``asyncio.gather`` over the same reads, a semaphore of C, the same GET
  and ``Authorization`` header, one ``aiohttp.ClientSession`` with the same pool (100
  connections, the SDK's default ``PoolLimits``, passed to the SDK client explicitly), the
  status checked, JSON parsed with ``resp.json()`` and the job taken out of its list;
* three rows to tell where a difference comes from: ``gather + et.jobs.get`` (the SDK
  client without fan_out), ``fan_out + raw read`` (fan_out's engine, raw reads) and
  ``fan_out, trust_env=False`` (the SDK client made with ``trust_env=False``: with the
  default, aiohttp looks up ``.netrc`` and the proxy variables in a worker thread on every
  request).

Each contender first reads 100 times (warm-up, connections opened), then come 5 rounds,
each running every contender once in a rotating order; the table gives each contender's
median round. The target is judged on 30 more pairs of rounds of fan_out and raw aiohttp
alone, back to back, in ABBA order (fan_out first in one pair, raw aiohttp first in the
next): the median over the pairs of fan_out's reads/s over raw aiohttp's. On a shared
machine one contender's rounds spread by 10-30 % or more, and the median of a few rounds
moves by several per cent from run to run; pairing cancels a drift that moves both, and
many pairs narrow the median. The table's ratio of median rounds is reported beside it.
The client's CPU time per typed read is reported too (the process's CPU time over the reads
of a round, median over rounds): with one core each, the server may bound both contenders'
throughput, while CPU per read shows what the SDK itself costs; and the client's time in
garbage collection per round (median), timed with ``gc.callbacks``. The floor is 0.7x raw
aiohttp's throughput.

Part B, the emulator adds 20 ms to every ET Engine request (``FaultConfig.latency``, key
``"etengine"``): ``fan_out`` at C = 32 and C = 100 over all 2,000 job reads, against a
sequential blocking loop (``http.client``, one kept-alive connection, ``json.loads``) over
the first 200 of them (the full 2,000 would take 40 s and tell nothing more). Throughputs
are per read, so the ratio compares like with like. Each is also given as a ratio to its
concurrency ceiling, C reads per 20 ms (1 for the loop): ``fan_out`` at C = 32 should reach
0.9x of it.

Secondary: the same two parts for Workbench ``wb.sessions.get(id)`` (``POST
/api/get_session`` for one id, 20 running sessions read round robin), a heavier typed model
(``SessionListing`` / ``Session`` / ``LaunchParameters``) behind an envelope. The targets
are judged on the ET Engine reads; the Workbench figures are reported alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from aiocompute import ETEngineClient, PoolLimits, Timeouts, WorkbenchClient, fan_out

from ._common import TOKEN, EmulatorProcess, Report, add_common_args, cpu_seconds

#: Workbench sessions start at once, so every read finds them running.
TIMINGS = {
    "session_launch_delay": 0,
    "session_pending_delay": 0,
    "session_starting_delay": 0,
}
#: ET Engine: the emulator's default job timings (all finished within about 0.3 s), and no
#: job fails, so every batch reaches "succeeded" before the timed reads.
ET_CONFIG = {"failure_rate": 0.0}
#: The emulator's default ET Engine key (sent raw in ``Authorization``) and a tool it knows.
ET_KEY = "et-key"
ET_TOOL = "tool-sim"
#: Batches created; the jobs are spread evenly over them (20 x 100 for 2,000 reads).
BATCHES = 20
SESSIONS = 20
#: Warm-up reads per contender (connections opened, code paths warm); fewer with --quick.
WARMUP = 100
QUICK_WARMUP = 20
#: Connections in the pool of every async contender (the SDK's default PoolLimits).
POOL = 100
#: Longest wait for the ET Engine batches to finish during setup.
SETUP_TIMEOUT = 60.0
#: Timed rounds per contender in part A's table (each round runs every contender once).
ROUNDS = 5
#: ABBA pairs of fan_out and raw aiohttp for the judged ratio of part A (a third of them for
#: the secondary Workbench reads).
PAIRS = 30
#: Latency the emulator adds to every request in part B, seconds.
LATENCY = 0.02
#: Part A's floor: fan_out's throughput over raw aiohttp's with no added latency.
FLOOR_A = 0.7
#: Part B's target: fan_out at C = 32 over its concurrency ceiling (C reads per LATENCY).
TARGET_B = 0.9

Client = Any
Item = Any


class Reads:
    """One kind of read, done by every contender: the SDK call, the raw aiohttp request and
    the raw ``http.client`` request, each checking the answer the same way."""

    #: Title and row label of the kind of read.
    title = ""
    sdk_call = ""
    #: The ``FaultConfig.latency`` key of the API.
    latency_key = ""

    def __init__(self, url: str, items: list[Item]) -> None:
        self.url = url
        self.items = items

    def client(self, *, trust_env: bool = True) -> AbstractAsyncContextManager[Client]:
        """A new SDK client with a pool of :data:`POOL` connections."""
        raise NotImplementedError

    def sdk_read(self, client: Client) -> Callable[[Item], Awaitable[Any]]:
        """The SDK's read of one item."""
        raise NotImplementedError

    def raw_read(self, session: aiohttp.ClientSession) -> Callable[[Item], Awaitable[Any]]:
        """The hand-written aiohttp read of one item."""
        raise NotImplementedError

    def wire(self, item: Item) -> tuple[str, str, bytes | None, dict[str, str]]:
        """Method, path, body and headers of one read, for the blocking loop."""
        raise NotImplementedError

    def check(self, data: Any) -> Any:
        """The record in a parsed answer (raises when it is not there)."""
        raise NotImplementedError


class JobReads(Reads):
    """ET Engine ``et.jobs.get(batch_id, job_id)``: ``GET /batches/<id>/jobs/<job_id>``."""

    title = "ET Engine job reads"
    sdk_call = "et.jobs.get"
    latency_key = "etengine"

    def client(self, *, trust_env: bool = True) -> AbstractAsyncContextManager[Client]:
        """An :class:`ETEngineClient` on the emulator."""
        return ETEngineClient(
            api_key=ET_KEY,
            base_url=self.url,
            limits=PoolLimits(max_connections=POOL),
            trust_env=trust_env,
        )

    def sdk_read(self, client: Client) -> Callable[[Item], Awaitable[Any]]:
        """``et.jobs.get`` on a ``(batch_id, job_id)`` pair: the call itself, with no
        coroutine of the benchmark's around it (as ``wb.sessions.get`` is passed as is)."""
        et: ETEngineClient = client
        return lambda pair: et.jobs.get(pair[0], pair[1])

    def raw_read(self, session: aiohttp.ClientSession) -> Callable[[Item], Awaitable[Any]]:
        """GET with the raw key, status checked, ``resp.json()``, the job out of its list."""
        headers = {"Authorization": ET_KEY}
        base = self.url

        async def read(pair: tuple[str, str]) -> Any:
            url = f"{base}/batches/{pair[0]}/jobs/{pair[1]}"
            async with session.get(url, headers=headers) as r:
                r.raise_for_status()
                data = await r.json()
            return self.check(data)

        return read

    def wire(self, item: Item) -> tuple[str, str, bytes | None, dict[str, str]]:
        """``GET <base path>/batches/<id>/jobs/<job_id>``."""
        path = f"{urlsplit(self.url).path}/batches/{item[0]}/jobs/{item[1]}"
        return "GET", path, None, {"Authorization": ET_KEY}

    def check(self, data: Any) -> Any:
        """The job: the answer is a list of one (or a bare object)."""
        job = data[0] if isinstance(data, list) and data else data
        if not isinstance(job, dict) or "job_id" not in job:
            raise RuntimeError(f"unexpected job answer: {str(data)[:200]}")
        return job


class SessionReads(Reads):
    """Workbench ``wb.sessions.get(id)``: ``POST /api/get_session`` for one id."""

    title = "Workbench session reads (secondary)"
    sdk_call = "wb.sessions.get"
    latency_key = "workbench"

    def client(self, *, trust_env: bool = True) -> AbstractAsyncContextManager[Client]:
        """A :class:`WorkbenchClient` on the emulator."""
        return WorkbenchClient(
            self.url, token=TOKEN, limits=PoolLimits(max_connections=POOL), trust_env=trust_env
        )

    def sdk_read(self, client: Client) -> Callable[[Item], Awaitable[Any]]:
        """``wb.sessions.get`` on a session id."""
        wb: WorkbenchClient = client
        return wb.sessions.get

    def raw_read(self, session: aiohttp.ClientSession) -> Callable[[Item], Awaitable[Any]]:
        """POST the same body with the bearer token, ``resp.json()``, the session out."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        endpoint = self.url + "/api/get_session"

        async def read(session_id: str) -> Any:
            body = _session_body(session_id)
            async with session.post(endpoint, json=body, headers=headers) as r:
                r.raise_for_status()
                data = await r.json()
            return self.check(data)

        return read

    def wire(self, item: Item) -> tuple[str, str, bytes | None, dict[str, str]]:
        """``POST <base path>/api/get_session`` with a JSON body."""
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        body = json.dumps(_session_body(item)).encode()
        return "POST", urlsplit(self.url).path + "/api/get_session", body, headers

    def check(self, data: Any) -> Any:
        """The one session of the envelope's ``result``."""
        try:
            return data["result"]["sessions"][0]
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(f"unexpected session answer: {str(data)[:200]}") from None


def _session_body(session_id: str) -> dict[str, Any]:
    """The JSON body ``wb.sessions.get`` sends."""
    return {"method": "get_session", "kwparams": {"session_id": session_id}}


# --------------------------------------------------------------------------------------------
# Contenders


async def run_fanout(read: Callable[[Item], Awaitable[Any]], items: list[Item], c: int) -> int:
    """fan_out over ``read``; the number of reads that succeeded (any failure raises)."""
    result = await fan_out(read, items, concurrency=c)
    if result.failed:
        raise RuntimeError(f"fan_out: {result.failed} reads failed: {result.errors[0][1]!r}")
    return result.succeeded


async def run_gather(read: Callable[[Item], Awaitable[Any]], items: list[Item], c: int) -> int:
    """asyncio.gather with a semaphore of ``c`` over ``read``; the number of reads."""
    sem = asyncio.Semaphore(c)

    async def one(item: Item) -> Any:
        async with sem:
            return await read(item)

    found = await asyncio.gather(*(one(i) for i in items))
    return len(found)


def run_sequential(reads: Reads, items: list[Item]) -> int:
    """A plain blocking loop: http.client on one kept-alive connection, json.loads."""
    parts = urlsplit(reads.url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host and port in {reads.url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    done = 0
    try:
        for item in items:
            method, path, body, headers = reads.wire(item)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            if response.status != 200:
                raise RuntimeError(f"unexpected answer: HTTP {response.status}: {raw[:200]!r}")
            reads.check(json.loads(raw))
            done += 1
    finally:
        conn.close()
    return done


class GCClock:
    """Milliseconds the client spent in garbage collection while it is installed
    (``gc.callbacks``), whatever generation was collected."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._started) * 1e3

    def __enter__(self) -> GCClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def timed_round(run: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """One round: reads/s, client CPU milliseconds per read and client milliseconds in
    garbage collection."""
    with GCClock() as collecting:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        done = await run()
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "reads": done,
        "seconds": elapsed,
        "rps": done / elapsed,
        "cpu_ms": cpu / done * 1e3,
        "gc_ms": collecting.ms,
    }


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round of median throughput (with the spread of all rounds)."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rps_min"] = ordered[0]["rps"]
    chosen["rps_max"] = ordered[-1]["rps"]
    chosen["cpu_ms_median"] = statistics.median(r["cpu_ms"] for r in rounds)
    chosen["gc_ms_median"] = statistics.median(r["gc_ms"] for r in rounds)
    return chosen


def contenders_a(reads: Reads) -> tuple[str, ...]:
    """Part A's rows: the SDK, the raw baselines, and the three diagnostic rows."""
    return (
        "fan_out",
        "raw aiohttp",
        "raw aiohttp, SDK timeouts",
        f"gather + {reads.sdk_call}",
        "fan_out + raw read",
        "fan_out, trust_env=False",
    )


Run = Callable[[list[Item]], Awaitable[int]]


def contender_runs(
    reads: Reads,
    client: Client,
    raw: aiohttp.ClientSession,
    concurrency: int,
    *,
    raw_timed: aiohttp.ClientSession | None = None,
    no_env: Client | None = None,
) -> dict[str, Run]:
    """Part A's contenders by row name, each reading a list of items (the ``raw aiohttp,
    SDK timeouts`` row only with ``raw_timed``, a session with the SDK's timeouts; the
    ``trust_env=False`` row only with ``no_env``, a client made so)."""
    names = contenders_a(reads)
    sdk, bare = reads.sdk_read(client), reads.raw_read(raw)
    runs: dict[str, Run] = {
        names[0]: lambda xs: run_fanout(sdk, xs, concurrency),
        names[1]: lambda xs: run_gather(bare, xs, concurrency),
    }
    if raw_timed is not None:
        bare_timed = reads.raw_read(raw_timed)
        runs[names[2]] = lambda xs: run_gather(bare_timed, xs, concurrency)
    runs[names[3]] = lambda xs: run_gather(sdk, xs, concurrency)
    runs[names[4]] = lambda xs: run_fanout(bare, xs, concurrency)
    if no_env is not None:
        sdk_no_env = reads.sdk_read(no_env)
        runs[names[5]] = lambda xs: run_fanout(sdk_no_env, xs, concurrency)
    return runs


async def part_a(
    reads: Reads, emu: EmulatorProcess, concurrency: int, rounds: int, warmup: int, pairs: int
) -> dict[str, Any]:
    """fan_out vs raw aiohttp (and the hybrids), no added latency; then ``pairs`` more
    rounds of fan_out and raw aiohttp alone, back to back in ABBA order, for the judged
    ratio (``paired``: fan_out's reads/s over raw aiohttp's, per pair)."""
    items = reads.items
    names = contenders_a(reads)
    out: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    server: dict[str, float] = dict.fromkeys(names, 0.0)
    # The same raw reads on a session with the SDK's default timeouts (the ClientTimeout
    # the SDK makes of them): what the SDK costs beyond enforcing its deadlines.
    t = Timeouts()
    async with (
        reads.client() as client,
        reads.client(trust_env=False) as no_env,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL)) as raw,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL), timeout=t._for_request(t.total)
        ) as raw_timed,
    ):
        runs = contender_runs(reads, client, raw, concurrency, raw_timed=raw_timed, no_env=no_env)
        for run in runs.values():
            await run(items[:warmup])
        for index in range(rounds):
            # Rotate the order so that no contender always runs first (or last).
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                before = emu.cpu()
                result = await timed_round(lambda name=name: runs[name](items))  # type: ignore[misc]
                server[name] += emu.cpu() - before
                out[name].append(result)
        paired: list[float] = []
        judged = ("fan_out", "raw aiohttp")
        for index in range(pairs):
            # ABBA: each contender goes first in every other pair, so neither gains from
            # its place, and a machine that drifts during a pair moves both alike.
            got: dict[str, float] = {}
            for name in judged if index % 2 == 0 else judged[::-1]:
                got[name] = (await timed_round(lambda name=name: runs[name](items)))["rps"]  # type: ignore[misc]
            paired.append(got["fan_out"] / got["raw aiohttp"])
    summary = {name: median_round(rs) for name, rs in out.items()}
    for name in summary:
        summary[name]["server_cpu_ms"] = server[name] / (rounds * len(items)) * 1e3
    return {"rounds": out, "summary": summary, "paired": paired}


async def part_b(reads: Reads, emu: EmulatorProcess, subset: int, warmup: int) -> dict[str, Any]:
    """fan_out vs a sequential loop, :data:`LATENCY` added per request; each row also holds
    its concurrency ceiling (``ceiling_rps``: C reads per LATENCY, 1 for the loop)."""
    items = reads.items
    emu.set_latency({reads.latency_key: LATENCY})
    results: dict[str, dict[str, float]] = {}
    try:
        async with reads.client() as client:
            sdk = reads.sdk_read(client)
            await run_fanout(sdk, items[:warmup], 32)
            for concurrency in (32, 100):
                results[f"fan_out C={concurrency}"] = {
                    **await timed_round(
                        lambda c=concurrency: run_fanout(sdk, items, c)  # type: ignore[misc]
                    ),
                    "ceiling_rps": concurrency / LATENCY,
                }
        t0 = time.perf_counter()
        done = await asyncio.to_thread(run_sequential, reads, items[:subset])
        elapsed = time.perf_counter() - t0
        results["sequential loop"] = {
            "reads": done,
            "seconds": elapsed,
            "rps": done / elapsed,
            "ceiling_rps": 1 / LATENCY,
        }
    finally:
        emu.set_latency({})
    return results


# --------------------------------------------------------------------------------------------
# Setup


async def make_jobs(url: str, reads: int) -> list[tuple[str, str]]:
    """Create :data:`BATCHES` batches holding ``reads`` jobs in all, wait until every batch
    has succeeded and every job is listed, and return ``(batch_id, job_id)`` pairs."""
    per_batch = -(-reads // BATCHES)
    async with ETEngineClient(api_key=ET_KEY, base_url=url) as et:
        batch_ids: list[str] = []
        for b in range(BATCHES):
            created = await et.batches.create(
                ET_TOOL,
                fixed_args={"sweep": "bench"},
                variable_args=[{"case": b * per_batch + k} for k in range(per_batch)],
            )
            if created.batch_id is None:
                raise RuntimeError("the emulator named no batch on create")
            batch_ids.append(created.batch_id)
        await et.batches.wait_all(batch_ids, timeout=SETUP_TIMEOUT)
        pairs: list[tuple[str, str]] = []
        for batch_id in batch_ids:
            jobs = await et.jobs.list(batch_id)
            if len(jobs) != per_batch:
                raise RuntimeError(f"batch {batch_id} lists {len(jobs)} jobs, not {per_batch}")
            pairs.extend((batch_id, job.job_id) for job in jobs)
    return pairs[:reads]


async def make_sessions(url: str, reads: int) -> list[str]:
    """Launch :data:`SESSIONS` sessions; ``reads`` ids, round robin over them."""
    async with WorkbenchClient(url, token=TOKEN) as wb:
        launched = [
            await wb.sessions.launch(
                "VS Code", name=f"s{i}", launch_parameters={"name": f"s{i}", "cluster": "Local"}
            )
            for i in range(SESSIONS)
        ]
    ids = [s.id for s in launched]
    return [ids[i % len(ids)] for i in range(reads)]


# --------------------------------------------------------------------------------------------
# Report


def table_a(report: Report, label: str, a: dict[str, Any], reads: int, c: int, rounds: int) -> None:
    """Part A's table for one kind of read."""
    summary = a["summary"]
    raw = summary["raw aiohttp"]
    report.table(
        f"A. {label}: {reads:,} reads, no added latency, concurrency {c} "
        f"(median of {rounds} round{'s' if rounds != 1 else ''})",
        [
            "contender",
            "reads/s",
            "min-max reads/s",
            "client CPU ms/read",
            "client GC ms/round",
            "server CPU ms/read",
            "vs raw aiohttp",
        ],
        [
            [
                name,
                r["rps"],
                f"{r['rps_min']:,.0f}-{r['rps_max']:,.0f}",
                f"{r['cpu_ms_median']:.3f}",
                f"{r['gc_ms_median']:.1f}",
                f"{r['server_cpu_ms']:.3f}",
                f"{r['rps'] / raw['rps']:.2f}x",
            ]
            for name, r in summary.items()
        ],
    )


def table_b(report: Report, label: str, b: dict[str, Any], reads: int) -> None:
    """Part B's table for one kind of read."""
    seq = b["sequential loop"]
    report.table(
        f"B. {label}: {LATENCY * 1e3:.0f} ms added per request; fan_out over {reads:,} reads, "
        f"the sequential loop over the first {int(seq['reads']):,}",
        [
            "contender",
            "reads",
            "seconds",
            "reads/s",
            "ceiling reads/s",
            "vs ceiling",
            "vs sequential",
        ],
        [
            [
                name,
                int(r["reads"]),
                r["seconds"],
                r["rps"],
                f"{r['ceiling_rps']:,.0f}",
                f"{r['rps'] / r['ceiling_rps']:.2f}x",
                f"{r['rps'] / seq['rps']:.1f}x",
            ]
            for name, r in b.items()
        ],
    )


def ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """fan_out / raw aiohttp throughput and CPU per read (A); fan_out / its concurrency
    ceiling and fan_out C=32 / the loop (B).

    ``paired_ratio`` (the judged figure of A) is the median over the ABBA pairs of
    fan_out's throughput over raw aiohttp's in the same pair (the two ran back to back);
    ``paired_ratio_q1`` / ``_q3`` are its quartiles. ``throughput_ratio`` is the ratio of
    the two contenders' median rounds of the rotating table, which may come from different
    moments. ``cpu_us`` / ``raw_cpu_us``: client CPU microseconds per read (the process's
    CPU time over a round's reads, median over the rounds). ``ceiling_ratio``: fan_out at
    C = 32 over C reads per :data:`LATENCY`.
    """
    fo, raw = a["summary"]["fan_out"], a["summary"]["raw aiohttp"]
    raw_timed = a["summary"]["raw aiohttp, SDK timeouts"]
    paired = a["paired"]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    return {
        "paired_ratio": statistics.median(paired),
        "paired_ratio_q1": quartiles[0],
        "paired_ratio_q3": quartiles[2],
        "pairs": len(paired),
        "throughput_ratio": fo["rps"] / raw["rps"],
        "throughput_ratio_same_timeouts": fo["rps"] / raw_timed["rps"],
        "no_env_ratio": a["summary"]["fan_out, trust_env=False"]["rps"] / raw["rps"],
        "no_env_cpu_us": a["summary"]["fan_out, trust_env=False"]["cpu_ms_median"] * 1e3,
        "cpu_us": fo["cpu_ms_median"] * 1e3,
        "raw_cpu_us": raw["cpu_ms_median"] * 1e3,
        "cpu_ratio": fo["cpu_ms_median"] / raw["cpu_ms_median"],
        "ceiling_ratio": b["fan_out C=32"]["rps"] / b["fan_out C=32"]["ceiling_rps"],
        "ceiling_ratio_c100": b["fan_out C=100"]["rps"] / b["fan_out C=100"]["ceiling_rps"],
        "speedup": b["fan_out C=32"]["rps"] / b["sequential loop"]["rps"],
        "speedup_c100": b["fan_out C=100"]["rps"] / b["sequential loop"]["rps"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--reads", type=int, help="reads per contender (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="C of part A (default 32)")
    parser.add_argument("--rounds", type=int, help="timed rounds per contender, part A")
    parser.add_argument(
        "--pairs", type=int, help=f"ABBA pairs for the judged ratio of A (default {PAIRS})"
    )
    parser.add_argument("--subset", type=int, help="reads of the sequential loop (default 200)")
    args = parser.parse_args(args_list)
    reads = args.reads or (200 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    pairs = args.pairs or (2 if args.quick else PAIRS)
    subset = args.subset or (10 if args.quick else 200)
    warmup = QUICK_WARMUP if args.quick else WARMUP
    concurrency = args.concurrency
    if min(reads, rounds, pairs, subset, concurrency) < 1:
        parser.error("--reads, --rounds, --pairs, --subset and --concurrency must be at least 1")

    async def run(emu: EmulatorProcess) -> dict[str, dict[str, Any]]:
        jobs = JobReads(emu.etengine_url, await make_jobs(emu.etengine_url, reads))
        sessions = SessionReads(emu.url, await make_sessions(emu.url, reads))
        return {
            "part_a": await part_a(jobs, emu, concurrency, rounds, warmup, pairs),
            "part_b": await part_b(jobs, emu, subset, warmup),
            "workbench_part_a": await part_a(
                sessions, emu, concurrency, rounds, warmup, max(1, pairs // 3)
            ),
            "workbench_part_b": await part_b(sessions, emu, subset, warmup),
        }

    with EmulatorProcess(TIMINGS, etengine=ET_CONFIG, seed=3) as emu:
        parts = asyncio.run(run(emu))

    report = Report("bench_fanout", args_list)
    a, b = parts["part_a"], parts["part_b"]
    wa, wb = parts["workbench_part_a"], parts["workbench_part_b"]
    table_a(report, JobReads.title, a, reads, concurrency, rounds)
    table_b(report, JobReads.title, b, reads)
    table_a(report, SessionReads.title, wa, reads, concurrency, rounds)
    table_b(report, SessionReads.title, wb, reads)
    et, wbr = ratios(a, b), ratios(wa, wb)
    verdict_a = "met" if et["paired_ratio"] >= FLOOR_A else "MISSED"
    verdict_b = "met" if et["ceiling_ratio"] >= TARGET_B else "MISSED"
    report.note(
        f"floor A, fan_out >= {FLOOR_A}x raw aiohttp throughput with no added latency "
        f"(ET Engine job reads): {verdict_a} ({et['paired_ratio']:.2f}x, the median of "
        f"fan_out / raw aiohttp over {et['pairs']} ABBA pairs, quartiles "
        f"{et['paired_ratio_q1']:.2f}x-{et['paired_ratio_q3']:.2f}x; median round / median "
        f"round in the table: {et['throughput_ratio']:.2f}x; against raw aiohttp with the "
        f"SDK's timeouts: {et['throughput_ratio_same_timeouts']:.2f}x)"
    )
    report.note(
        f"client CPU per typed read with no added latency (ET Engine job reads, process CPU "
        f"time / reads): fan_out {et['cpu_us']:.0f} us, raw aiohttp {et['raw_cpu_us']:.0f} us "
        f"({et['cpu_ratio']:.2f}x raw's); with trust_env=False {et['no_env_cpu_us']:.0f} us, "
        f"{et['no_env_ratio']:.2f}x raw aiohttp's throughput"
    )
    report.note(
        f"target B, fan_out (C=32) >= {TARGET_B}x its concurrency ceiling at "
        f"{LATENCY * 1e3:.0f} ms per request (ET Engine job reads): {verdict_b} "
        f"({et['ceiling_ratio']:.2f}x of {32 / LATENCY:,.0f} reads/s; C=100: "
        f"{et['ceiling_ratio_c100']:.2f}x of {100 / LATENCY:,.0f} reads/s); against the "
        f"sequential loop: {et['speedup']:.1f}x (C=100: {et['speedup_c100']:.1f}x)"
    )
    report.note(
        f"secondary, Workbench session reads (not judged): A {wbr['paired_ratio']:.2f}x "
        f"raw aiohttp (median round / median round: {wbr['throughput_ratio']:.2f}x; "
        f"client CPU per read {wbr['cpu_us']:.0f} us, {wbr['cpu_ratio']:.2f}x raw's); "
        f"B {wbr['ceiling_ratio']:.2f}x the concurrency ceiling at C=32 "
        f"({wbr['speedup']:.1f}x the sequential loop), {wbr['ceiling_ratio_c100']:.2f}x at "
        f"C=100"
    )
    report.note(
        f"The sequential loops ran on the first {subset:,} reads; their reads/s is per read, "
        f"like the others'. Ideal at {LATENCY * 1e3:.0f} ms per request: "
        f"{1 / LATENCY:.0f} reads/s sequential, C x {1 / LATENCY:.0f} reads/s with C in flight."
    )
    report.values = {**parts, **et, "workbench": wbr}
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
