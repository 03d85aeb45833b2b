"""Exactly-once creates: every create of every API through a fault-injecting proxy, one
fault at a time, and the reconciliation logic itself.

The goal checked per case: no duplicate at the server, and the resource that exists is the
one returned to the caller, or is named by the OutcomeUnknown it got (token, candidates,
or a later ``find()``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import pytest
from aiohttp import web

from aiocompute import (
    ETEngineClient,
    LakeSailClient,
    OutcomeUnknown,
    QiskitRuntimeClient,
    RateGovernor,
    Timeouts,
    TransportError,
    WorkbenchClient,
)
from aiocompute._core.reconcile import (
    OWNER_LABEL,
    TOKEN_LABEL,
    Claims,
    Plan,
    create_once,
    default_owner,
    labelled_map,
    labelled_tags,
)
from aiocompute.emulator import Emulator
from aiocompute.emulator.chaos import COMMITTED, ChaosProxy, Fault
from aiocompute.workbench import JobSpec
from helpers import make_emulator_on_loop_clock, quick_retry

pytestmark = pytest.mark.virtual_time

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
TIMEOUT = 0.5  # the client's total timeout: a STALL holds the answer longer
STALL = 1.0


def _options() -> dict[str, Any]:
    """The clients' settings. Their governor reads the running loop's clock (on a real loop
    the same clock as its default, time.monotonic), so that on virtual time the pause
    after a 429 passes on the virtual clock too."""
    governor = RateGovernor(clock=asyncio.get_running_loop().time)
    return {"timeouts": Timeouts(total=TIMEOUT), "retry": quick_retry(), "governor": governor}


# The create requests (Workbench reads are POSTs too: only the creates get faults).
_CREATES = re.compile(
    r"/api/launch_session$|/api/launch_job$|/api/launch_audited_job$"
    r"|/workloads/sessions$|/tools/[^/]+$|/v1/sessions$|/v1/jobs$"
)


def creates_only(request: web.Request) -> bool:
    return request.method == "POST" and _CREATES.search(request.path) is not None


Made = Callable[[Any], str]


class Api:
    """One create of one API: the client, the call, how to count what exists, its id."""

    def __init__(
        self,
        name: str,
        client: Callable[[str, Emulator], Any],
        create: Callable[[Any], Awaitable[Any]],
        exist: Callable[[Emulator], Sequence[str]],
        id_of: Made,
        token_field: bool,
    ) -> None:
        self.name, self.client, self.create = name, client, create
        self.exist, self.id_of, self.token_field = exist, id_of, token_field


def _wb(url: str, emu: Emulator) -> WorkbenchClient:
    return WorkbenchClient(f"{url}/workbench", token="user-token", **_options())


SPEC = JobSpec(name="j", cluster="Local", command="echo hi")


def _qiskit(url: str, emu: Emulator) -> QiskitRuntimeClient:
    return QiskitRuntimeClient(
        token="qiskit-key",
        instance=CRN,
        base_url=f"{url}/qiskit/api",
        iam_url=emu.qiskit_iam_url,
        **_options(),
    )


APIS = [
    Api(
        "workbench session",
        _wb,
        lambda wb: wb.sessions.launch(
            "VS Code", name="rc", launch_parameters={"name": "rc", "cluster": "Local"}
        ),
        lambda emu: list(emu.workbench.sessions),
        lambda s: s.id,
        token_field=False,
    ),
    Api(
        "workbench job",
        _wb,
        lambda wb: wb.jobs.launch(SPEC),
        lambda emu: list(emu.workbench.jobs),
        lambda j: j.id,
        token_field=True,
    ),
    Api(
        "workbench audited job",
        _wb,
        lambda wb: wb.audited_jobs.launch(SPEC),
        lambda emu: list(emu.workbench.audited_jobs),
        lambda j: j.id,
        token_field=True,
    ),
    Api(
        "lakesail session",
        lambda url, emu: LakeSailClient(
            "lakesail-token", base_url=f"{url}/lakesail/api/v1", **_options()
        ),
        lambda ls: ls.sessions.create(name="rc"),
        lambda emu: list(emu.lakesail.sessions),
        lambda s: s.id,
        token_field=True,
    ),
    Api(
        "qiskit job",
        _qiskit,
        lambda q: q.jobs.run("sampler", "ibm_kyiv", params={"pubs": [], "version": 2}),
        lambda emu: list(emu.qiskit.jobs),
        lambda j: j.id,
        token_field=True,
    ),
    Api(
        "etengine batch",
        lambda url, emu: ETEngineClient(
            api_key="et-key", base_url=f"{url}/etengine/v1", **_options()
        ),
        lambda et: et.batches.create("tool-hello"),
        lambda emu: list(emu.etengine.batches),
        lambda b: b.batch_id,
        token_field=False,
    ),
]

FAULTS = [
    Fault.DROP_BEFORE,
    Fault.COMMIT_THEN_DROP,
    Fault.COMMIT_THEN_502,
    Fault.STATUS_502,
    Fault.STATUS_503,
    Fault.STATUS_504,
    Fault.STATUS_429,
    Fault.STALL,
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with make_emulator_on_loop_clock(seed=5) as server:
        yield server


async def _landed(emu: Emulator, api: Api, count: int) -> None:
    """Wait until ``count`` resources exist (a stalled create lands late)."""
    with anyio.fail_after(10):
        while len(api.exist(emu)) < count:  # noqa: ASYNC110 (the emulator has no event)
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
# On virtual time: a STALL (1 s) and the governor's pause after a 429 (1 s) take no real time
async def test_one_fault_on_a_create_makes_one_resource_its_caller_gets(
    api: Api, fault: Fault
) -> None:
    async with (
        make_emulator_on_loop_clock(seed=5) as emu,
        ChaosProxy(
            emu.url, rates={fault: 1.0}, targets=creates_only, stall=STALL, max_faults=1
        ) as proxy,
        api.client(proxy.url, emu) as client,
    ):
        unknown: OutcomeUnknown | None = None
        try:
            made = await api.create(client)
        except OutcomeUnknown as exc:
            unknown = exc
        if unknown is not None:
            # Only a stall (the request still on its way when the lookup ran) may end so.
            assert fault is Fault.STALL, unknown
            assert unknown.timed_out
            assert unknown.find is not None
            await _landed(emu, api, 1)
            found = [api.id_of(r) for r in await unknown.find()]
            assert found == api.exist(emu)  # named: a later look finds it
            assert (unknown.token is not None) == api.token_field
        else:
            await asyncio.sleep(STALL if fault is Fault.STALL else 0)
            assert [api.id_of(made)] == api.exist(emu)
    assert len(api.exist(emu)) == 1  # never a duplicate
    sent = [r for r in proxy.log if creates_only_record(r)]
    # Sent again only when the first surely did not act (or was refused with a 429).
    assert len(sent) == (1 if fault in COMMITTED else 2)


def creates_only_record(record: Any) -> bool:
    return record.method == "POST" and _CREATES.search(record.path) is not None


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
async def test_without_reconciliation_an_ambiguous_create_is_raised_at_once(
    emu: Emulator, api: Api
) -> None:
    async with (
        ChaosProxy(emu.url, rates={Fault.COMMIT_THEN_DROP: 1.0}, targets=creates_only) as proxy,
        api.client(proxy.url, emu) as client,
    ):
        client._reconcile = False  # as reconcile=False in the constructor
        with pytest.raises(OutcomeUnknown) as info:
            await api.create(client)
    assert info.value.token is None
    assert info.value.find is None
    assert len(api.exist(emu)) == 1
    assert sum(1 for r in proxy.log if r.method != "POST" or creates_only_record(r)) == 1


@pytest.mark.parametrize("fault", [Fault.COMMIT_THEN_DROP, Fault.STATUS_502])
async def test_a_qiskit_session_create_says_it_cannot_be_looked_up(
    emu: Emulator, fault: Fault
) -> None:
    async with (
        ChaosProxy(emu.url, rates={fault: 1.0}, targets=creates_only) as proxy,
        _qiskit(proxy.url, emu) as q,
    ):
        with pytest.raises(OutcomeUnknown, match="cannot be looked up") as info:
            await q.sessions.create("ibm_kyiv")
    assert info.value.status == (502 if fault is Fault.STATUS_502 else None)
    assert len(emu.qiskit.sessions) == (1 if fault in COMMITTED else 0)
    assert proxy.injected == {fault: 1}  # never sent twice


async def test_the_owner_label_and_the_token_ride_on_what_is_created(emu: Emulator) -> None:
    async with (
        WorkbenchClient(f"{emu.url}/workbench", token="user-token", owner="ana@nb") as wb,
        LakeSailClient("lakesail-token", base_url=emu.lakesail_url, owner="ana@nb") as ls,
    ):
        job = await wb.jobs.launch(
            JobSpec(name="j", cluster="Local", command="true", tags=["mine"])
        )
        session = await ls.sessions.create(name="s", metadata={"team": "x"})
        mine = await ls.sessions.create(name="t", metadata={TOKEN_LABEL: "chosen"})
    assert job.tags[0] == "mine"
    assert f"{OWNER_LABEL}:ana@nb" in job.tags
    assert sum(t.startswith(f"{TOKEN_LABEL}:") for t in job.tags) == 1
    assert session.metadata["team"] == "x"
    assert session.metadata[OWNER_LABEL] == "ana@nb"
    assert len(session.metadata[TOKEN_LABEL]) == 32
    assert mine.metadata[TOKEN_LABEL] == "chosen"  # a caller's own token is kept


async def test_a_token_chosen_by_the_caller_finds_a_session_an_earlier_process_made(
    emu: Emulator,
) -> None:
    # The first process's create landed but its answer was lost (it died); the second
    # process, with the same token, gets that session instead of a new one.
    async with (
        ChaosProxy(
            emu.url, rates={Fault.COMMIT_THEN_DROP: 1.0}, targets=creates_only, max_faults=1
        ) as proxy,
        LakeSailClient("lakesail-token", base_url=f"{proxy.url}/lakesail/api/v1") as ls,
    ):
        session = await ls.sessions.create(name="job-42", metadata={TOKEN_LABEL: "job-42"})
    assert list(emu.lakesail.sessions) == [session.id]


def test_client_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="owner"):
        ETEngineClient(api_key="k", base_url="https://et.example", owner="  ")
    with pytest.raises(TypeError, match="reconcile"):
        ETEngineClient(api_key="k", base_url="https://et.example", reconcile="yes")  # type: ignore[arg-type]
    client = ETEngineClient(api_key="k", base_url="https://et.example")
    assert client.owner == default_owner()
    assert "@" in client.owner


def test_labels_keep_the_callers_own() -> None:
    assert labelled_tags(["a"], token="t", owner="o") == (
        "t",
        ["a", f"{OWNER_LABEL}:o", f"{TOKEN_LABEL}:t"],
    )
    assert labelled_tags([f"{TOKEN_LABEL}:mine"], token="t", owner="o")[0] == "mine"
    assert labelled_tags(None, token=None, owner="o") == (None, [f"{OWNER_LABEL}:o"])
    assert labelled_map({OWNER_LABEL: "me"}, token="t", owner="o") == (
        "t",
        {OWNER_LABEL: "me", TOKEN_LABEL: "t"},
    )
    with pytest.raises(TypeError, match="not one string"):
        labelled_tags("abc", token=None, owner="o")
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        labelled_map(["a"], token=None, owner="o")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the logic


def ambiguous(*, timed_out: bool = False, status: int | None = None) -> OutcomeUnknown:
    return OutcomeUnknown(
        "lost", method="POST", url="https://x/create", timed_out=timed_out, status=status
    )


class Server:
    """A fake create: ``outcomes`` say, per send, whether it acts and what is raised."""

    def __init__(self, outcomes: list[tuple[bool, OutcomeUnknown | None]]) -> None:
        self.outcomes = outcomes
        self.made: list[str] = []
        self.sends = 0
        self.finds = 0

    async def send(self) -> str:
        acts, error = self.outcomes[self.sends]
        self.sends += 1
        if acts:
            self.made.append(f"r{len(self.made) + 1}")
        if error is not None:
            raise error
        return self.made[-1]

    async def find(self) -> list[str]:
        self.finds += 1
        return list(self.made)

    async def plan(self) -> Plan[str]:
        return Plan(self.find, id_of=str, lookup="the list", token="tok")


async def test_found_after_an_ambiguous_failure_is_returned() -> None:
    server = Server([(True, ambiguous())])
    assert await create_once(server.send, server.plan, what="create") == "r1"
    assert (server.sends, server.finds) == (1, 1)


async def test_surely_absent_is_sent_again_with_the_same_plan() -> None:
    server = Server([(False, ambiguous(status=503)), (True, None)])
    assert await create_once(server.send, server.plan, what="create") == "r1"
    assert server.sends == 2


async def test_absent_after_a_timeout_cannot_be_told() -> None:
    server = Server([(False, ambiguous(timed_out=True))])
    with pytest.raises(OutcomeUnknown, match="may still be on its way") as info:
        await create_once(server.send, server.plan, what="create")
    error = info.value
    assert (error.token, error.lookup, error.candidates, error.timed_out) == (
        "tok",
        "the list",
        (),
        True,
    )
    assert server.sends == 1
    server.made.append("late")  # the request lands after all: find() names it
    assert error.find is not None
    assert await error.find() == ["late"]


async def test_resends_are_bounded() -> None:
    server = Server([(False, ambiguous())] * 3)
    with pytest.raises(OutcomeUnknown, match="after sending it again"):
        await create_once(server.send, server.plan, what="create", resends=2)
    assert server.sends == 3


async def test_several_candidates_are_named() -> None:
    server = Server([(True, ambiguous())])
    server.made.append("r0")
    with pytest.raises(OutcomeUnknown, match="2 resources may be") as info:
        await create_once(server.send, server.plan, what="create")
    assert set(info.value.candidates) == {"r0", "r2"}


async def test_a_failed_lookup_cannot_tell() -> None:
    server = Server([(True, ambiguous())])

    async def broken() -> list[str]:
        raise TransportError("down")

    async def plan() -> Plan[str]:
        return Plan(broken, id_of=str, lookup="the list")

    with pytest.raises(OutcomeUnknown, match="the lookup failed: down"):
        await create_once(server.send, plan, what="create")


async def test_a_lookup_past_its_deadline_cannot_tell() -> None:
    server = Server([(True, ambiguous())])

    async def slow() -> list[str]:
        await anyio.sleep(10)
        return []

    async def plan() -> Plan[str]:
        return Plan(slow, id_of=str, lookup="the list")

    with pytest.raises(OutcomeUnknown, match=r"longer than 0\.05 s"):
        await create_once(server.send, plan, what="create", deadline=0.05)


async def test_a_plan_that_cannot_be_made_leaves_the_create_as_it_is() -> None:
    server = Server([(True, None)])

    async def plan() -> Plan[str]:
        raise TransportError("cannot list")

    assert await create_once(server.send, plan, what="create") == "r1"


async def test_a_fingerprint_lookup_leaves_the_other_creates_resources_alone() -> None:
    # Two creates of one kind at once: A's answer is lost after it acted, B's comes later.
    # A's lookup waits for B to finish sending, and does not take B's resource for its own.
    claims = Claims()
    made: list[str] = []
    b_may_answer = anyio.Event()

    async def send_a() -> str:
        made.append("a")
        raise ambiguous()

    async def send_b() -> str:
        made.append("b")
        await b_may_answer.wait()
        return "b"

    async def find() -> list[str]:
        mine = claims.claimed("kind")
        return [r for r in made if r not in mine]

    async def plan() -> Plan[str]:
        return Plan(find, id_of=str, lookup="the list")

    results: dict[str, str] = {}

    async def run(name: str, send: Callable[[], Awaitable[str]]) -> None:
        results[name] = await create_once(send, plan, what=name, claims=claims, kind="kind")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "b", send_b)
        await anyio.sleep(0.01)
        tg.start_soon(run, "a", send_a)
        await anyio.sleep(0.05)
        assert "a" not in results  # waiting for b, which is still sending
        b_may_answer.set()
    assert results == {"a": "a", "b": "b"}
    assert claims.claimed("kind") == frozenset()  # forgotten once no create of it runs


# -- the list taken before a fingerprinted create ------------------------------------------------


async def test_creates_that_start_together_share_the_listing_taken_before_them() -> None:
    claims = Claims()
    takes = 0
    existing = ["old"]

    async def take() -> list[str]:
        nonlocal takes
        takes += 1
        await anyio.sleep(0.1)  # a listing takes a while
        return list(existing)

    seen: list[frozenset[str]] = []

    async def create(kind: str) -> None:
        with claims.creating(kind):
            seen.append(await claims.baseline("source", take))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(create, f"kind-{i % 3}")
    # Two listings for fifty creates of any kind from one source: the first create's, and
    # the one the 49 others (begun while it was under way) shared.
    assert takes == 2
    assert seen == [frozenset({"old"})] * 50


async def test_a_listing_under_way_is_not_joined_the_next_one_is() -> None:
    # A create that begins while a listing is under way waits for it, then takes the next
    # one: the first may have begun before this create was recorded.
    claims = Claims()
    answers = iter([["first"], ["second"]])
    release = anyio.Event()

    async def take() -> list[str]:
        await release.wait()
        return next(answers)

    got: dict[str, frozenset[str]] = {}

    async def create(name: str) -> None:
        with claims.creating("kind"):
            got[name] = await claims.baseline("source", take)

    async with anyio.create_task_group() as tg:
        tg.start_soon(create, "early")
        await anyio.sleep(0.01)
        tg.start_soon(create, "late")
        tg.start_soon(create, "later")
        await anyio.sleep(0.01)
        release.set()
    assert got == {
        "early": frozenset({"first"}),
        "late": frozenset({"second"}),
        "later": frozenset({"second"}),
    }


async def test_when_a_shared_listing_fails_each_create_takes_its_own() -> None:
    claims = Claims()
    calls = 0

    async def take() -> list[str]:
        nonlocal calls
        calls += 1
        n = calls
        await anyio.sleep(0.01)
        if n == 2:  # the shared one (the first is the one under way)
            raise TransportError("reset")
        return [f"list-{n}"]

    results: list[object] = []

    async def create() -> None:
        with claims.creating("kind"):
            try:
                results.append(await claims.baseline("source", take))
            except TransportError as exc:
                results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)  # takes list-1
        await anyio.sleep(0.001)
        for _ in range(3):
            tg.start_soon(create)  # wait, share the second (which fails), then their own
    # The create that sent the failed one gets its error (and sends unreconciled); the two
    # others took a listing each.
    assert len([r for r in results if isinstance(r, TransportError)]) == 1
    lists = [r for r in results if isinstance(r, frozenset)]
    assert sorted(lists, key=sorted) == [{"list-1"}, {"list-3"}, {"list-4"}]


async def test_concurrent_launches_take_a_few_listings_not_one_each(emu: Emulator) -> None:
    async with WorkbenchClient(emu.workbench_url, token="user-token", **_options()) as wb:
        before = emu.stats["workbench.get_session"]
        launched = await asyncio.gather(
            *(
                wb.sessions.launch(
                    "VS Code", name=f"s{i}", launch_parameters={"name": "p", "cluster": "Local"}
                )
                for i in range(40)
            )
        )
    assert len({s.id for s in launched}) == 40
    assert emu.stats["workbench.get_session"] - before <= 4
