"""Benchmark: creates through a fault-injecting proxy, per API: what exists at the end, and
what the callers were told.

Run from the repository root::

    python -m benchmarks.bench_chaos            # 100 creates per API (about a minute)
    python -m benchmarks.bench_chaos --quick    # 12 creates per API

Each API's create call (Workbench ``sessions.launch``, Qiskit ``sessions.create``, LakeSail
``sessions.create``, ET Engine ``batches.create``) goes through
:class:`~aiocompute.emulator.chaos.ChaosProxy` in front of the emulator, which injects on
each create, at random (seeded): a connection cut before the server saw it, a cut after
the server acted, a 502 after the server acted, 502/503/504 and 429 refusals, and stalls
longer than the client's timeout. Reads pass untouched.

Columns: ``asked`` create calls; ``exist`` resources at the server at the end; ``returned``
calls that returned the resource; ``unknown`` calls that raised ``OutcomeUnknown``;
``failed`` calls that raised another error; ``orphans`` resources that exist but whose id
no caller got; ``named`` orphans named by an ``OutcomeUnknown`` (its ``token`` or lookup);
``lost`` orphans not named; ``duplicates`` resources beyond one per call that reached the
server. The goal: zero duplicates and zero lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiocompute import (
    AioComputeError,
    ETEngineClient,
    LakeSailClient,
    OutcomeUnknown,
    QiskitRuntimeClient,
    RetryPolicy,
    Timeouts,
    WorkbenchClient,
)
from aiocompute.emulator import Emulator
from aiocompute.emulator.chaos import ChaosProxy, Fault

from ._common import Report, add_common_args

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
RATES = {
    Fault.DROP_BEFORE: 0.05,
    Fault.COMMIT_THEN_DROP: 0.05,
    Fault.COMMIT_THEN_502: 0.05,
    Fault.STATUS_502: 0.03,
    Fault.STATUS_503: 0.03,
    Fault.STATUS_504: 0.03,
    Fault.STATUS_429: 0.05,
    Fault.STALL: 0.03,
}
STALL = 1.2  # longer than the client's total timeout below
TIMEOUTS = Timeouts(total=0.8)
RETRY = RetryPolicy(backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.05)
CONCURRENCY = 8

Create = Callable[[int], Awaitable[str | None]]


Setup = tuple[Any, Create, Callable[[], int]]
OPTIONS: dict[str, Any] = {"timeouts": TIMEOUTS, "retry": RETRY}
LAUNCH = {"name": "chaos", "cluster": "Local"}


def _workbench(url: str, emu: Emulator) -> Setup:
    wb = WorkbenchClient(f"{url}/workbench", token="user-token", **OPTIONS)

    async def create(i: int) -> str | None:
        launched = await wb.sessions.launch("VS Code", name=f"chaos-{i}", launch_parameters=LAUNCH)
        return launched.id

    return wb, create, lambda: len(emu.workbench.sessions)


def _qiskit(url: str, emu: Emulator) -> Setup:
    # IAM tokens come straight from the emulator: only the creates go through the proxy.
    q = QiskitRuntimeClient(
        token="qiskit-key",
        instance=CRN,
        base_url=f"{url}/qiskit/api",
        iam_url=emu.qiskit_iam_url,
        **OPTIONS,
    )

    async def create(i: int) -> str | None:
        return (await q.sessions.create("ibm_kyiv")).id

    return q, create, lambda: len(emu.qiskit.sessions)


def _lakesail(url: str, emu: Emulator) -> Setup:
    ls = LakeSailClient("lakesail-token", base_url=f"{url}/lakesail/api/v1", **OPTIONS)

    async def create(i: int) -> str | None:
        return (await ls.sessions.create(name=f"chaos-{i}")).id

    return ls, create, lambda: len(emu.lakesail.sessions)


def _etengine(url: str, emu: Emulator) -> Setup:
    et = ETEngineClient(api_key="et-key", base_url=f"{url}/etengine/v1", **OPTIONS)

    async def create(i: int) -> str | None:
        return (await et.batches.create("tool-hello")).batch_id

    return et, create, lambda: len(emu.etengine.batches)


APIS: dict[str, Callable[[str, Emulator], Setup]] = {
    "Workbench sessions.launch": _workbench,
    "Qiskit sessions.create": _qiskit,
    "LakeSail sessions.create": _lakesail,
    "ET Engine batches.create": _etengine,
}


async def _run_api(create: Create, n: int) -> tuple[list[str], int, int]:
    returned: list[str] = []
    unknown = failed = 0
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        nonlocal unknown, failed
        async with slots:
            try:
                new_id = await create(i)
            except OutcomeUnknown:
                unknown += 1
            except AioComputeError:
                failed += 1
            else:
                if new_id is not None:
                    returned.append(new_id)

    await asyncio.gather(*(one(i) for i in range(n)))
    return returned, unknown, failed


async def run(n: int, seed: int) -> list[list[Any]]:
    """One row per API."""
    rows: list[list[Any]] = []
    async with Emulator(seed=seed) as emu:
        for index, (name, setup) in enumerate(APIS.items()):
            async with ChaosProxy(emu.url, rates=RATES, stall=STALL, seed=seed + index) as proxy:
                client, create, count = setup(proxy.url, emu)
                before = count()
                async with client:
                    returned, unknown, failed = await _run_api(create, n)
                await asyncio.sleep(STALL)  # let stalled creates land
                exist = count() - before
                reached = sum(1 for r in proxy.log if r.method == "POST" and r.forwarded)
                orphans = exist - len(set(returned))
                named = 0  # OutcomeUnknown names no resource yet (no client token)
                rows.append(
                    [
                        name,
                        n,
                        exist,
                        len(returned),
                        unknown,
                        failed,
                        orphans,
                        named,
                        orphans - named,
                        max(0, exist - reached),
                        dict(sorted((f.value, c) for f, c in proxy.injected.items())),
                    ]
                )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("-n", "--creates", type=int, default=None, help="creates per API")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(args_list)
    n = args.creates or (12 if args.quick else 100)
    report = Report("bench_chaos", args_list)
    rows = asyncio.run(run(n, args.seed))
    columns = [
        "create",
        "asked",
        "exist",
        "returned",
        "unknown",
        "failed",
        "orphans",
        "named",
        "lost",
        "duplicates",
    ]
    report.table("Creates through a fault-injecting proxy", columns, [row[:-1] for row in rows])
    report.values = {
        row[0]: dict(zip([*columns[1:], "faults"], row[1:], strict=True)) for row in rows
    }
    for row in rows:
        report.note(f"{row[0]}: faults injected {row[-1]}")
    report.note("Goal: zero duplicates and zero lost (every resource that exists was returned")
    report.note("to its caller, or named in an OutcomeUnknown).")
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
