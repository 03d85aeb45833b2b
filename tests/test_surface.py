"""One surface for four APIs (issue 14), checked across the clients against the emulator:
``base_url`` everywhere (old names warn), ``.id`` on every model, every ``list`` a paginator
(awaitable and iterable), stop/close one id or many, states that print as the server's
strings, ``until`` in any case and ``"done"``, fan-out results and their sync twins,
imports, ``python -m aiocompute``, the Workbench ``/api`` trap, launching with one name,
and ET Engine job listings that wait for a new batch's jobs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import aiocompute
from aiocompute import (
    ETEngineClient,
    FanOutResult,
    JobSpec,
    LakeSailClient,
    NotFoundError,
    Outcome,
    Paginator,
    QiskitRuntimeClient,
    UnreachableState,
    WaitTimeout,
    WorkbenchClient,
    fan_out,
)
from aiocompute import sync as aiosync
from aiocompute.emulator import (
    Emulator,
    ETEngineEmulatorConfig,
    QiskitEmulatorConfig,
    WorkbenchEmulatorConfig,
)
from aiocompute.etengine import BatchJob
from aiocompute.workbench import Job, ListedSessions, SessionListing, SessionState
from helpers import QUICK_POLL, QUICK_RETRY

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found, unused-ignore]

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
WB = WorkbenchEmulatorConfig(
    session_launch_delay=0.02,
    session_pending_delay=0.02,
    session_starting_delay=0.02,
    session_stop_delay=0.01,
    session_kill_delay=0.01,
    job_pending_delay=0.01,
    job_chunk_count=2,
    job_chunk_interval=0.01,
)
QISKIT = QiskitEmulatorConfig(activate_delay=0.05, drain_delay=0.05, pending_inactive_delay=0.0)

pytestmark = [pytest.mark.emulator(seed=14, workbench=WB, qiskit=QISKIT), pytest.mark.virtual_time]

APIS = ["workbench", "qiskit", "lakesail", "etengine"]
# The older name of each client's address argument (LakeSail always said base_url).
OLD_NAMES = {"workbench": "server", "qiskit": "url", "etengine": "url"}


def _url(emu: Emulator, api: str) -> str:
    return {
        "workbench": emu.workbench_url,
        "qiskit": emu.qiskit_url,
        "lakesail": emu.lakesail_url,
        "etengine": emu.etengine_url,
    }[api]


def make(emu: Emulator, api: str, *, address: str = "base_url", **kwargs: Any) -> Any:
    """A client of ``api`` on the emulator, its address passed as ``address``."""
    kwargs[address] = _url(emu, api)
    kwargs.setdefault("cadence", QUICK_POLL)
    kwargs.setdefault("retry", QUICK_RETRY)
    if api == "workbench":
        return WorkbenchClient(token="user-token", **kwargs)
    if api == "qiskit":
        return QiskitRuntimeClient(
            token="qiskit-key", instance=CRN, iam_url=emu.qiskit_iam_url, **kwargs
        )
    if api == "lakesail":
        return LakeSailClient("lakesail-token", **kwargs)
    return ETEngineClient(api_key="et-key", **kwargs)


async def read_something(client: Any) -> None:
    """One read that reaches the server, whatever the client."""
    if isinstance(client, WorkbenchClient):
        await client.version()
    elif isinstance(client, QiskitRuntimeClient):
        with pytest.raises(NotFoundError):  # a real answer from the server, through base_url
            await client.sessions.get("0" * 20)
    elif isinstance(client, LakeSailClient):
        await client.sessions.list()
    else:
        await client.batches.list()


async def create_one(client: Any) -> Any:
    """Launch / create one resource; return what the call gave back."""
    if isinstance(client, WorkbenchClient):
        return await client.sessions.launch("VS Code", name="surface")
    if isinstance(client, QiskitRuntimeClient):
        return await client.sessions.create("ibm_kyiv")
    if isinstance(client, LakeSailClient):
        return await client.sessions.create(name="surface")
    return await client.batches.create("tool-sim", variable_args=[{"i": 1}, {"i": 2}])


# ------------------------------------------------------------------------------ constructors


@pytest.mark.parametrize("api", APIS)
async def test_base_url_works_in_every_client(emu: Emulator, api: str) -> None:
    async with make(emu, api) as client:
        await read_something(client)
        assert client._transport.base_url == _url(emu, api)


@pytest.mark.parametrize("api", sorted(OLD_NAMES))
async def test_the_old_address_name_warns_naming_the_new_one(emu: Emulator, api: str) -> None:
    old = OLD_NAMES[api]
    with pytest.warns(DeprecationWarning, match=rf"\({old}=\.\.\.\) is deprecated: use base_url="):
        client = make(emu, api, address=old)
    async with client:
        await read_something(client)  # and it still works
    with pytest.raises(TypeError, match=f"pass base_url= only .{old}= is its deprecated"):
        make(emu, api, **{old: _url(emu, api)})


def test_the_warning_points_at_the_callers_line() -> None:
    with pytest.warns(DeprecationWarning, match="use base_url") as caught:
        ETEngineClient(api_key="k", url="https://et.example.com")
    assert caught[0].filename == __file__


# ------------------------------------------------------------------------------ ids


@pytest.mark.parametrize("api", APIS)
async def test_every_model_a_user_gets_has_an_id(emu: Emulator, api: str) -> None:
    async with make(emu, api) as client:
        made = await create_one(client)
        assert isinstance(made.id, str)
        assert made.id
        if isinstance(client, ETEngineClient):
            assert made.id == made.batch_id
            status = await client.batches.status(made.id)
            assert status.id == made.id
            (batch,) = await client.batches.list()
            assert batch.id == made.id
            jobs = await client.jobs.list(made.id, expect=True)
            assert all(j.id == j.job_id for j in jobs)
            assert (await client.jobs.get(made.id, jobs[0].id)).id == jobs[0].id
        else:
            assert (await client.sessions.get(made.id)).id == made.id


# ------------------------------------------------------------------------------ listing


async def check_listing(listing: Any, ids: Callable[[Any], str]) -> list[str]:
    """A listing is a Paginator: awaited a list, iterated the same items."""
    assert isinstance(listing, Paginator)
    awaited = await listing
    assert isinstance(awaited, list)
    iterated = [item async for item in listing]
    assert [ids(i) for i in iterated] == [ids(i) for i in awaited]
    return [ids(i) for i in awaited]


@pytest.mark.parametrize("api", ["workbench", "lakesail", "etengine"])
async def test_every_list_is_awaitable_and_iterable(emu: Emulator, api: str) -> None:
    async with make(emu, api) as client:
        made = await create_one(client)
        if isinstance(client, WorkbenchClient):
            assert made.id in await check_listing(client.sessions.list(), lambda s: s.id)
            job = await client.jobs.launch(JobSpec(name="j", cluster="Local", exe="R"))
            assert job.id in await check_listing(client.jobs.list(), lambda j: j.id)
        elif isinstance(client, LakeSailClient):
            assert made.id in await check_listing(client.sessions.list(), lambda s: s.id)
        else:
            assert made.id in await check_listing(client.batches.list(), lambda b: b.id)
            assert len(await check_listing(client.jobs.list(made.id, expect=2), lambda j: j.id))


async def test_workbench_session_listing_keeps_its_jobs(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        launched = await wb.sessions.launch("RStudio", name="a")
        listing = await wb.sessions.list(include_jobs=True)
        assert isinstance(listing, ListedSessions)
        assert [s.id for s in listing] == [s.id for s in listing.sessions] == [launched.id]
        assert listing.session(launched.id) is listing[0]
        assert isinstance(listing.jobs, tuple)
        assert isinstance(listing.listing, SessionListing)
        # The history's SessionListing is iterable and sized too.
        history = await wb.sessions.history()
        assert len(history) == len(list(history)) == len(history.sessions)


async def test_workbench_jobs_list_filters_by_status_and_tags(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        tagged = await wb.jobs.launch(
            JobSpec(name="t", cluster="Local", exe="R", tags=["nightly", "etl"])
        )
        other = await wb.jobs.launch(JobSpec(name="o", cluster="Local", exe="R", tags=["adhoc"]))
        await wb.jobs.wait_all([tagged.id, other.id], "done", timeout=30)
        assert [j.id for j in await wb.jobs.list(tags="nightly")] == [tagged.id]
        assert [j.id for j in await wb.jobs.list(tags=["nightly", "etl"])] == [tagged.id]
        assert await wb.jobs.list(tags=["nightly", "adhoc"]) == []
        finished = {j.id for j in await wb.jobs.list(statuses="finished")}  # any case
        assert finished == {tagged.id, other.id}
        assert await wb.jobs.list(statuses=["Running", "PENDING"]) == []
        with pytest.raises(ValueError, match="statuses must be"):
            wb.jobs.list(statuses=[])


# ------------------------------------------------------------------------------ stop / close


async def test_stop_and_close_take_one_id_or_many(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        spec = JobSpec(name="long", cluster="Local", exe="R", args=["--emu-duration=30"])
        jobs = [await wb.jobs.launch(spec) for _ in range(3)]
        await wb.jobs.stop([jobs[0].id, jobs[1].id])  # used to be a TypeError
        await wb.jobs.stop(jobs[2].id)
        assert all(emu.workbench.jobs[j.id].stopped_at is not None for j in jobs)
        sessions = [(await wb.sessions.launch("RStudio", name=f"s{i}")).id for i in range(3)]
        await wb.sessions.stop(sessions[:2])
        await wb.sessions.stop(sessions[2])
        assert all(emu.workbench.sessions[s].stop_requested is not None for s in sessions)
    async with make(emu, "qiskit") as q:
        ids = [(await q.sessions.create("ibm_kyiv")).id for _ in range(3)]
        await q.sessions.close(ids[:2])
        await q.sessions.close(ids[2])
        assert [emu.qiskit.sessions[i].state for i in ids] == ["closed"] * 3
    async with make(emu, "lakesail") as ls:
        ids = [(await ls.sessions.create(name=f"c{i}")).id for i in range(3)]
        await ls.sessions.close(ids[:2])
        await ls.sessions.close(ids[2])
        assert [emu.lakesail.sessions[i].state for i in ids] == ["closed"] * 3
    async with make(emu, "etengine") as et:
        ids = [(await et.batches.create("tool-sim")).id for _ in range(3)]
        await et.batches.delete(ids[:2])
        await et.batches.delete(ids[2])
        assert not set(ids) & set(emu.etengine.batches)


async def test_stopping_many_tries_each_and_groups_the_failures(emu: Emulator) -> None:
    async with make(emu, "etengine") as et:
        kept = (await et.batches.create("tool-sim")).id
        with pytest.raises(ExceptionGroup, match=r"1 of 2 item\(s\) failed \(index 0\)") as info:
            await et.batches.delete(["a/b", kept])
        assert info.group_contains(ValueError, match="batch_id must not")
        assert kept not in emu.etengine.batches  # the good one was still deleted
        with pytest.raises(ValueError, match="non-empty collection"):
            await et.batches.delete([])


# ------------------------------------------------------------------------------ states


async def test_states_print_as_the_servers_strings(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        launched = await wb.sessions.launch("RStudio", name="p")
        session = await wb.sessions.wait(launched.id, until="RUNNING", timeout=30)  # any case
    state = session.activity_state
    assert state is SessionState.RUNNING
    assert (str(state), f"{state}", f"{state:>8}", state) == (
        "running",
        "running",
        " running",
        "running",
    )
    assert repr(state) == "<SessionState.RUNNING: 'running'>"  # repr still says which enum


async def test_until_is_read_in_any_case(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        job = await wb.jobs.launch(JobSpec(name="j", cluster="Local", exe="R"))
        done = await wb.jobs.wait(job.id, until="finished", timeout=30)  # Workbench: Finished
        assert done.state == "Finished"
        with pytest.raises(ValueError, match=r"no state 'finish'.*'done'"):
            await wb.jobs.wait(job.id, until="finish", timeout=30)


async def test_done_returns_a_job_however_it_ended(emu: Emulator) -> None:
    async with make(emu, "workbench") as wb:
        bad = await wb.jobs.launch(
            JobSpec(name="b", cluster="Local", exe="R", args=["--emu-exit=3"])
        )
        ended = await wb.jobs.wait(bad.id, until="done", timeout=30)
        assert isinstance(ended, Job)
        assert (ended.state, ended.exit_code) == ("Finished", 3)
        # Named targets keep their meaning: a non-zero exit is no "Finished".
        with pytest.raises(UnreachableState, match="exit code 3"):
            await wb.jobs.wait(
                bad.id, until={"Finished", "Failed", "Killed", "Canceled"}, timeout=30
            )
        fails = await wb.jobs.launch(
            JobSpec(name="f", cluster="Local", exe="R", args=["--emu-fail"])
        )
        results = await wb.jobs.wait_all([bad.id, fails.id], until="DONE", timeout=30)
        assert [r.state for r in results] == ["Finished", "Failed"]
        # A wait token keeps "done", so a resumed wait takes any end as well.
        token = wb.jobs.wait_token([bad.id], "done", timeout=30)
        assert token.until == ("done",)
        (resumed,) = await wb.jobs.resume_wait(token.to_json())
        assert resumed.exit_code == 3


async def test_done_in_the_other_apis(emu: Emulator) -> None:
    async with make(emu, "etengine") as et:
        batch = await et.batches.create("tool-sim", variable_args=[{"i": 1}])
        assert (await et.batches.wait(batch.id, "done", timeout=30)).state == "succeeded"
    async with make(emu, "lakesail") as ls:
        s = await ls.sessions.create(name="d")
        await ls.sessions.close(s.id)
        assert str((await ls.sessions.wait(s.id, "Done", timeout=30)).status) == "closed"


# ------------------------------------------------------------------------------ fan-out


async def test_fan_out_gives_values_or_outcomes(emu: Emulator) -> None:
    async with make(emu, "etengine") as et:
        ids = [(await et.batches.create("tool-sim")).id for _ in range(3)]
        result = await fan_out(et.batches.status, ids, concurrency=2)
        assert isinstance(result, FanOutResult)
        assert [s.id for s in result.values()] == ids  # the README's one way to the values
        assert [(o.item, o.ok) for o in result] == [(i, True) for i in ids]


def test_sync_fan_out_twins_run_blocking_calls_in_threads() -> None:
    threads: set[str] = set()
    release = threading.Barrier(3, timeout=30)

    def square(n: int) -> int:
        threads.add(threading.current_thread().name)
        if n < 3:
            release.wait()  # three calls in flight at once, or this times out
        if n == 4:
            raise ValueError("four")
        return n * n

    result = aiosync.fan_out(square, range(6), concurrency=3)
    assert isinstance(result, FanOutResult)
    assert [o.value for o in result if o.ok] == [0, 1, 4, 9, 25]
    assert [(item, type(error)) for item, error in result.errors] == [(4, ValueError)]
    assert len(threads) == 3
    with pytest.raises(ExceptionGroup):
        result.values()
    release.reset()
    outcomes = list(aiosync.fan_out_iter(square, range(6), concurrency=3))
    assert sorted(o.index for o in outcomes) == list(range(6))
    assert all(isinstance(o, Outcome) for o in outcomes)
    with pytest.raises(ExceptionGroup, match="fan_out: 1 item"):
        aiosync.fan_out(lambda n: 1 // n, [1, 0, 2], concurrency=1, fail_fast=True)


def test_sync_fan_out_is_lazy_and_refuses_async_functions() -> None:
    started: list[int] = []

    def call(n: int) -> int:
        started.append(n)
        return n

    outcomes = aiosync.fan_out_iter(call, range(1000), concurrency=2)
    assert started == []  # nothing before the first next()
    with contextlib.closing(outcomes):  # type: ignore[type-var]
        next(iter(outcomes))
    assert len(started) < 1000

    async def coro(n: int) -> int:
        return n

    with pytest.raises(TypeError, match=r"use aiocompute\.fan_out for async ones"):
        aiosync.fan_out(coro, [1])  # type: ignore[arg-type]


def test_sync_fan_out_over_a_sync_client(threaded_emulator: Emulator) -> None:
    with aiosync.ETEngineClient(api_key="et-key", base_url=threaded_emulator.etengine_url) as et:
        ids = [et.batches.create("tool-sim").id for _ in range(4)]
        statuses = aiosync.fan_out(et.batches.status, ids, concurrency=4).values()
        assert [s.id for s in statuses] == ids
        # Old sync code that used a listing as a list still works, with a warning.
        with pytest.warns(DeprecationWarning, match=r"use \.all\(\)"):
            assert len(et.batches.list()) == len(ids)
        assert [b.id for b in et.batches.list()] == [b.id for b in et.batches.list().all()]
    with aiosync.WorkbenchClient(threaded_emulator.workbench_url, token="user-token") as wb:
        launched = wb.sessions.launch("RStudio", name="sync")
        listing = wb.sessions.list(include_jobs=True)
        assert [s.id for s in listing] == [launched.id]
        assert listing.all().jobs == ()
        with pytest.warns(DeprecationWarning, match=r"use \.all\(\)\.jobs"):
            assert listing.jobs == ()  # what a SessionListing had, for a release
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            listing.nope  # noqa: B018


# ------------------------------------------------------------------------------ imports, -m


def test_inputs_from_aiocompute_models_from_their_package() -> None:
    from aiocompute import etengine, lakesail, workbench

    assert aiocompute.JobSpec is workbench.JobSpec
    assert aiocompute.LaunchParameters is workbench.LaunchParameters
    assert aiocompute.Hardware is etengine.Hardware
    assert aiocompute.SessionConfig is lakesail.SessionConfig
    for package in (workbench, etengine, lakesail):
        for name in package.__all__:
            assert getattr(package, name) is not None


def test_python_dash_m_aiocompute_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiocompute", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aiocompute {aiocompute.__version__}"


# ------------------------------------------------------------------------------ Workbench


@pytest.mark.parametrize("suffix", ["", "/", "/api", "/api/"])
async def test_workbench_takes_its_address_with_or_without_api(emu: Emulator, suffix: str) -> None:
    async with WorkbenchClient(emu.workbench_url + suffix, token="user-token") as wb:
        assert (await wb.version()).major is not None
        assert wb._transport.base_url == emu.workbench_url


async def test_a_wrong_workbench_address_says_what_it_should_be(emu: Emulator) -> None:
    async with WorkbenchClient(emu.workbench_url + "/nope", token="user-token") as wb:
        with pytest.raises(
            NotFoundError, match=r"no Workbench API at .*/nope: base_url is"
        ) as info:
            await wb.sessions.get("abc")
    assert "add /api" not in str(info.value)
    assert "session 'abc' not found" not in str(info.value)  # the id was not the problem


async def test_a_session_launches_with_its_name_once(emu: Emulator) -> None:
    assert emu.config.workbench.require_launch_parameters
    async with make(emu, "workbench") as wb:
        bare = await wb.sessions.launch("VS Code")
        named = await wb.sessions.launch("VS Code", name="etl")
        for launched, name in ((bare, "VS Code"), (named, "etl")):
            session = await wb.sessions.get(launched.id)
            assert session.name == name
            assert session.launch_parameters is not None
            assert session.launch_parameters.cluster == "Local"
        assert emu.workbench.sessions[named.id].launch_parameters["name"] == "etl"


# ------------------------------------------------------------------------------ ET Engine


@pytest.mark.emulator(seed=14, etengine=ETEngineEmulatorConfig(register_delay=(0.05, 0.4)))
async def test_et_jobs_list_waits_for_a_new_batch_to_be_listed(emu: Emulator) -> None:
    async with make(emu, "etengine") as et:
        batch = await et.batches.create("tool-sim", variable_args=[{"i": i} for i in range(8)])
        plain = await et.jobs.list(batch.id)
        assert len(plain) <= 8  # partial, or not: it depends on when it was read
        complete = await et.jobs.list(batch.id, expect=8, timeout=30)
        assert len(complete) == 8
        assert all(isinstance(j, BatchJob) for j in complete)
        assert len(await et.jobs.list(batch.id, expect=True, timeout=30)) == 8
        with pytest.raises(WaitTimeout, match=r"8 of 9 jobs listed") as info:
            await et.jobs.list(batch.id, expect=9, timeout=0.2)
        assert len(info.value.last) == 8
        assert info.value.attempts >= 1
        with pytest.raises(ValueError, match="timeout must be a positive"):
            et.jobs.list(batch.id, expect=8, timeout=0)
