"""Benchmark: creates through a fault-injecting proxy, per API: what exists at the end, and
what the callers were told.

Run from the repository root::

    python -m benchmarks.bench_chaos            # 100 creates per API (about a minute)
    python -m benchmarks.bench_chaos --quick    # 12 creates per API

Each API's create call (Workbench ``sessions.launch`` and ``jobs.launch``, Qiskit
``sessions.create`` and ``jobs.run``, LakeSail ``sessions.create``, ET Engine
``batches.create``) goes through
:class:`~aiocompute.emulator.chaos.ChaosProxy` in front of the emulator, which injects on
each create, at random (seeded): a connection cut before the server saw it, a cut after
the server acted, a 502 after the server acted, 502/503/504 and 429 refusals, and stalls
longer than the client's timeout. Reads pass untouched. The clients reconcile (the
default): an ambiguous failure is looked up by client token or fingerprint.

Columns: ``asked`` create calls; ``exist`` resources at the server at the end; ``returned``
calls that returned the resource; ``unknown`` calls that raised ``OutcomeUnknown``;
``failed`` calls that raised another error; ``orphans`` resources that exist but whose id
no caller got; ``named`` orphans named by an ``OutcomeUnknown`` (its candidates, or what its
``find()`` finds once the stalls are over); ``lost`` orphans not named; ``duplicates``
resources beyond one per create call (by client token where the API has one; else a lower
bound: more resources than calls that returned or may have made one), plus ids returned to
two calls. The goal: zero duplicates and zero lost.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import frozen

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
from aiocompute._core.reconcile import TOKEN_LABEL, tag_value
from aiocompute.emulator import Emulator
from aiocompute.emulator.chaos import ChaosProxy, Fault
from aiocompute.workbench import JobSpec

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


@frozen
class Setup:
    """One API's create: the client, the call, the ids that exist at the server, and how
    resources are grouped by client token (None: the API has no field for one)."""

    client: Any
    create: Create
    exist: Callable[[], set[str]]
    token_of: Callable[[str], str | None] | None


OPTIONS: dict[str, Any] = {"timeouts": TIMEOUTS, "retry": RETRY}
LAUNCH = {"name": "chaos", "cluster": "Local"}
SPEC = JobSpec(name="chaos", cluster="Local", command="true")


def _workbench(url: str, emu: Emulator) -> Setup:
    wb = WorkbenchClient(f"{url}/workbench", token="user-token", **OPTIONS)

    async def create(i: int) -> str | None:
        launched = await wb.sessions.launch("VS Code", name=f"chaos-{i}", launch_parameters=LAUNCH)
        return launched.id

    return Setup(wb, create, lambda: set(emu.workbench.sessions), None)


def _workbench_jobs(url: str, emu: Emulator) -> Setup:
    wb = WorkbenchClient(f"{url}/workbench", token="user-token", **OPTIONS)

    async def create(i: int) -> str | None:
        return (await wb.jobs.launch(SPEC)).id

    def token_of(job_id: str) -> str | None:
        tags = emu.workbench.jobs[job_id].spec.get("tags") or []
        return tag_value(tags, TOKEN_LABEL)

    return Setup(wb, create, lambda: set(emu.workbench.jobs), token_of)


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

    return Setup(q, create, lambda: set(emu.qiskit.sessions), None)


def _qiskit_jobs(url: str, emu: Emulator) -> Setup:
    q = QiskitRuntimeClient(
        token="qiskit-key",
        instance=CRN,
        base_url=f"{url}/qiskit/api",
        iam_url=emu.qiskit_iam_url,
        **OPTIONS,
    )

    async def create(i: int) -> str | None:
        return (await q.jobs.run("sampler", "ibm_kyiv", params={"pubs": [], "version": 2})).id

    def token_of(job_id: str) -> str | None:
        return tag_value(emu.qiskit.jobs[job_id].tags, TOKEN_LABEL)

    return Setup(q, create, lambda: set(emu.qiskit.jobs), token_of)


def _lakesail(url: str, emu: Emulator) -> Setup:
    ls = LakeSailClient("lakesail-token", base_url=f"{url}/lakesail/api/v1", **OPTIONS)

    async def create(i: int) -> str | None:
        return (await ls.sessions.create(name=f"chaos-{i}")).id

    def token_of(session_id: str) -> str | None:
        return emu.lakesail.sessions[session_id].metadata.get(TOKEN_LABEL)

    return Setup(ls, create, lambda: set(emu.lakesail.sessions), token_of)


def _etengine(url: str, emu: Emulator) -> Setup:
    et = ETEngineClient(api_key="et-key", base_url=f"{url}/etengine/v1", **OPTIONS)

    async def create(i: int) -> str | None:
        return (await et.batches.create("tool-hello")).batch_id

    return Setup(et, create, lambda: set(emu.etengine.batches), None)


APIS: dict[str, Callable[[str, Emulator], Setup]] = {
    "Workbench sessions.launch": _workbench,
    "Workbench jobs.launch": _workbench_jobs,
    "Qiskit sessions.create": _qiskit,
    "Qiskit jobs.run": _qiskit_jobs,
    "LakeSail sessions.create": _lakesail,
    "ET Engine batches.create": _etengine,
}

# Only the creates get faults (Workbench reads are POSTs too).
_CREATES = re.compile(
    r"/api/launch_session$|/api/launch_job$|/workloads/sessions$|/tools/|/v1/sessions$|/v1/jobs$"
)


def _creates_only(request: Any) -> bool:
    return request.method == "POST" and _CREATES.search(request.path) is not None


async def _run_api(create: Create, n: int) -> tuple[list[str], list[OutcomeUnknown], int]:
    returned: list[str] = []
    unknown: list[OutcomeUnknown] = []
    failed = 0
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        nonlocal failed
        async with slots:
            try:
                new_id = await create(i)
            except OutcomeUnknown as exc:
                unknown.append(exc)
            except AioComputeError:
                failed += 1
            else:
                if new_id is not None:
                    returned.append(new_id)

    await asyncio.gather(*(one(i) for i in range(n)))
    return returned, unknown, failed


async def _named(unknown: Sequence[OutcomeUnknown], id_of: Callable[[Any], str]) -> set[str]:
    """What the OutcomeUnknowns name: their candidates, and what their lookup finds now."""
    named: set[str] = set()
    for exc in unknown:
        named.update(exc.candidates)
        if exc.find is not None:
            named.update(id_of(r) for r in await exc.find())
    return named


def _id_of(resource: Any) -> str:
    return str(getattr(resource, "batch_id", None) or resource.id)


async def run(n: int, seed: int) -> list[list[Any]]:
    """One row per API."""
    rows: list[list[Any]] = []
    async with Emulator(seed=seed) as emu:
        for index, (name, setup) in enumerate(APIS.items()):
            async with ChaosProxy(
                emu.url, rates=RATES, stall=STALL, seed=seed + index, targets=_creates_only
            ) as proxy:
                api = setup(proxy.url, emu)
                before = api.exist()
                async with api.client:
                    returned, unknown, failed = await _run_api(api.create, n)
                    await asyncio.sleep(STALL)  # let stalled creates land
                    named_ids = await _named(unknown, _id_of)
                exist = api.exist() - before
                orphans = exist - set(returned)
                named = orphans & named_ids
                shared = len(returned) - len(set(returned))
                if api.token_of is not None:
                    tokens = Counter(api.token_of(i) for i in exist)
                    duplicates = sum(c - 1 for t, c in tokens.items() if t is not None)
                else:  # a lower bound: more than one resource per call that may have made one
                    duplicates = max(0, len(exist) - len(set(returned)) - len(unknown))
                rows.append(
                    [
                        name,
                        n,
                        len(exist),
                        len(returned),
                        len(unknown),
                        failed,
                        len(orphans),
                        len(named),
                        len(orphans) - len(named),
                        duplicates + shared,
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
