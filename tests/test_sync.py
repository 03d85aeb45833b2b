"""Sync twins (``aiocompute.sync``): parity with every async client, the generator, the
runtime adapters, and behaviour against the emulator (run in its own thread: the tests
themselves are plain sync functions, like the code the twins are for)."""

from __future__ import annotations

import _thread
import asyncio
import gc
import importlib.util
import inspect
import sys
import threading
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
import pytest

import aiocompute.sync as sync
from aiocompute import NotFoundError, WaitTimeout
from aiocompute._core.config import ConfigError
from aiocompute._core.http_config import PoolLimits, Timeouts
from aiocompute._core.pagination import Page, Paginator
from aiocompute._core.resources import BaseClient, WaitableResource
from aiocompute._core.transport import Transport
from aiocompute._core.wait_types import PollCadence, TransitionEvent, WaitResult
from aiocompute.emulator import Emulator, WorkbenchEmulatorConfig
from aiocompute.workbench import Job, JobSpec, OutputChunk, ServerVersion, Session

ROOT = Path(__file__).resolve().parents[1]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_sync", ROOT / "tools" / "gen_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_sync", module)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
CLIENTS = gen.discover_clients()

# ============================================================================================
# Parity: every async method has a twin with the same name and parameters
# ============================================================================================

LIFECYCLE = {name for name in vars(BaseClient) if not name.startswith("_")}


def _needs_twin(attr: Any) -> bool:
    return isinstance(attr, property) or inspect.isfunction(attr)


def _public_members(cls: type, skip: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        for name in vars(klass):
            if name.startswith("_") or name in skip or name in found:
                continue
            attr = inspect.getattr_static(cls, name)
            if _needs_twin(attr):
                found[name] = attr
    return found


def _params(func: Any) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(func)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()][1:]


def _async_resources(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {
        name: tp
        for name, tp in hints.items()
        if not name.startswith("_")
        and isinstance(tp, type)
        and any(
            inspect.iscoroutinefunction(getattr(tp, n, None))
            or inspect.isasyncgenfunction(getattr(tp, n, None))
            for n in dir(tp)
            if not n.startswith("_")
        )
    }


def parity_problems(async_cls: type, sync_cls: type, skip: set[str]) -> list[str]:
    """What the sync class lacks or gets wrong, compared with the async class."""
    problems = []
    for name, attr in _public_members(async_cls, skip).items():
        twin = inspect.getattr_static(sync_cls, name, None)
        where = f"{sync_cls.__name__}.{name}"
        if twin is None:
            problems.append(f"{where} is missing")
        elif isinstance(attr, property):
            if not isinstance(twin, property):
                problems.append(f"{where} should be a property")
        elif not inspect.isfunction(twin):
            problems.append(f"{where} is not a method")
        elif _params(attr) != _params(twin):
            problems.append(f"{where}{inspect.signature(twin)} != {inspect.signature(attr)}")
    return problems


def _twin_resources(sync_cls: type) -> dict[str, type]:
    return {
        name: tp
        for name, tp in typing.get_type_hints(sync_cls).items()
        if isinstance(tp, type) and issubclass(tp, sync.SyncResource)
    }


def test_every_api_package_client_is_discovered() -> None:
    names = {c.__name__ for c in CLIENTS}
    assert "WorkbenchClient" in names
    assert all(issubclass(c, BaseClient) for c in CLIENTS)


@pytest.mark.parametrize("async_cls", CLIENTS, ids=lambda c: c.__name__)
def test_every_async_method_has_a_sync_twin_with_the_same_signature(async_cls: type) -> None:
    sync_cls = getattr(sync, async_cls.__name__, None)
    assert sync_cls is not None, f"aiocompute.sync.{async_cls.__name__} is missing"
    assert issubclass(sync_cls, sync.SyncClient)
    assert async_cls.__name__ in sync.__all__
    assert _params(async_cls.__init__) == _params(sync_cls.__init__)
    problems = parity_problems(async_cls, sync_cls, LIFECYCLE)
    async_resources = _async_resources(async_cls)
    twins = _twin_resources(sync_cls)
    assert async_resources, f"{async_cls.__name__} has no resources?"
    assert set(twins) == set(async_resources)
    for name, resource in async_resources.items():
        problems += parity_problems(resource, twins[name], set())
    assert not problems, "\n".join(problems)
    # aclose / async with have their own twins.
    for name in ("close", "closed", "__enter__", "__exit__"):
        assert hasattr(sync_cls, name)


def test_the_parity_check_catches_a_missing_or_different_twin() -> None:
    class Async:
        async def a(self, x: int, *, y: int = 1) -> int:
            return x

        async def b(self) -> None:
            pass

    class Sync:
        def a(self, x: int, *, y: int = 2) -> int:
            return x

    problems = parity_problems(Async, Sync, set())
    assert any("Sync.b is missing" in p for p in problems)
    assert any(p.startswith("Sync.a(") for p in problems)


def _bind(hint: Any, env: dict[Any, Any]) -> Any:
    if isinstance(hint, TypeVar):
        return env.get(hint, hint)
    params = getattr(hint, "__parameters__", ())
    return hint[tuple(env.get(p, p) for p in params)] if params else hint


def resolved_hints(cls: type, name: str) -> dict[str, Any]:
    """The type hints of ``cls.<name>`` as a type checker sees them on ``cls``: type
    variables of its generic bases (``SyncWaitableResource[Session]``) bound."""
    env: dict[Any, Any] = {}
    for klass in reversed(cls.__mro__):
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if origin is not None and origin is not typing.Generic:
                args = [_bind(a, env) for a in typing.get_args(base)]
                env.update(zip(origin.__parameters__, args, strict=True))
    return {k: _bind(v, env) for k, v in typing.get_type_hints(getattr(cls, name)).items()}


def test_type_variables_are_resolved_in_the_generated_annotations() -> None:
    assert sync.WorkbenchSessionsResource.__orig_bases__ == (  # type: ignore[attr-defined]
        sync.SyncWaitableResource[Session],
    )
    assert resolved_hints(sync.WorkbenchSessionsResource, "wait")["return"] is Session
    assert resolved_hints(sync.WorkbenchJobsResource, "wait")["return"] is Job
    as_completed = resolved_hints(sync.WorkbenchJobsResource, "as_completed")["return"]
    assert as_completed == sync.SyncIterator[WaitResult[Job]]
    on_transition = resolved_hints(sync.WorkbenchJobsResource, "wait")["on_transition"]
    assert typing.get_args(on_transition)[0] == Callable[[TransitionEvent[Job]], object]
    output = typing.get_type_hints(sync.WorkbenchJobsResource.output)["return"]
    assert output == sync.SyncIterator[OutputChunk]


WAITING = sorted(n for n in vars(WaitableResource) if not n.startswith("_"))


@pytest.mark.parametrize("name", WAITING)
def test_the_hand_written_waiting_twins_match_the_async_ones(name: str) -> None:
    """SyncWaitableResource is written by hand: same parameters (annotations included) and
    the same docstring as WaitableResource, with the sync note for iterators."""
    async_fn = getattr(WaitableResource, name)
    twin = inspect.getattr_static(sync.SyncWaitableResource, name)
    assert inspect.isfunction(twin), f"SyncWaitableResource.{name} is missing"

    def params(fn: Any) -> list[tuple[str, Any, Any, Any]]:
        sig = inspect.signature(fn)
        return [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]

    assert params(twin) == params(async_fn)
    doc = inspect.getdoc(async_fn) or ""
    if inspect.isasyncgenfunction(inspect.unwrap(async_fn)):
        doc += " " + gen._NOTES["iterate"]
    assert " ".join((inspect.getdoc(twin) or "").split()) == " ".join(doc.split())


def test_generated_file_is_up_to_date() -> None:
    # In this process (the generator is loaded above); CI also runs `gen_sync.py --check`.
    committed = gen.TARGET.read_text(encoding="utf-8")
    assert gen.build() == committed, "the sync twins are stale: run `python tools/gen_sync.py`"


# ============================================================================================
# The generator on a fake client: every shape, end to end (generate, load, run)
# ============================================================================================


@attrs.frozen
class Item:
    """A fake resource."""

    id: str
    state: str = "done"


DEFAULT_PAGE = 2
RUNS: dict[str, Any] = {}


class FakeInner:
    """A nested resource."""

    async def ping(self) -> str:
        return "pong"


class _FakeBase(WaitableResource[Item]):
    """The type variable is bound here, one class above the resource."""

    _default_until = "done"
    _default_timeout = 1.0


class FakeThings(_FakeBase):
    """Things, with one method of each shape."""

    inner: FakeInner

    def __init__(self) -> None:
        self.inner = FakeInner()
        self.fetched: list[str | None] = []

    async def get(self, thing_id: str, /, *, loud: bool = False) -> Item:
        """One thing."""
        return Item(thing_id.upper() if loud else thing_id)

    def list(self, *, page_size: int = DEFAULT_PAGE, total: int = 5) -> Paginator[Item]:
        """A paginated listing."""

        async def fetch(marker: str | None) -> Page[Item]:
            self.fetched.append(marker)
            start = int(marker or 0)
            end = min(total, start + page_size)
            items = [Item(str(i)) for i in range(start, end)]
            return Page(items, str(end) if end < total else None)

        return Paginator(fetch)

    async def stream(self, count: int) -> AsyncIterator[int]:
        """Count, noting when the generator is closed."""
        RUNS["closed"] = False
        try:
            for i in range(count):
                await anyio.lowlevel.checkpoint()
                yield i
        finally:
            # Closing takes a while: only a close that is waited for is seen at once.
            await anyio.sleep(0.05)
            RUNS["closed"] = True

    @asynccontextmanager
    async def opened(self, name: str) -> AsyncIterator[str]:
        """An async context manager."""
        RUNS["opened"] = name
        try:
            yield f"<{name}>"
        finally:
            RUNS["opened"] = None

    @asynccontextmanager
    async def guarded(self, delay: float = 0.0) -> AsyncIterator[str]:
        """A cancel scope and a task group spanning the block; suppresses a LookupError."""
        RUNS["guarded"] = "entering"
        RUNS["guarded_unwound"] = False
        try:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.sleep, 0)
                    await anyio.sleep(delay)
                    RUNS["guarded"] = "entered"
                    try:
                        yield "inside"
                    except LookupError:
                        RUNS["guarded"] = "suppressed"
        finally:
            await anyio.sleep(0.05)  # unwinding takes a while: only a wait for it sees it
            RUNS["guarded_unwound"] = True

    def describe(self) -> str:
        """A plain method: runs in the loop thread."""
        asyncio.get_running_loop()  # raises outside the loop thread
        return f"thread {threading.get_ident()}"

    @property
    def size(self) -> int:
        """A property."""
        return 3

    async def combine(self, *parts: str, sep: str = "-", **extra: int) -> str:
        return sep.join(parts) + "".join(f"|{k}={v}" for k, v in sorted(extra.items()))

    async def slow(self, seconds: float) -> str:
        try:
            await anyio.sleep(seconds)
        finally:
            RUNS["slow_unwound"] = True
        return "slept"

    async def fail(self, exc_type: str) -> None:
        raise {"value": ValueError("bad thing"), "timeout": TimeoutError("own timeout")}[exc_type]


class FakeClient(BaseClient):
    """A fake client that never talks to a server."""

    things: FakeThings

    def __init__(self, base_url: str = "http://127.0.0.1:9", *, label: str = "fake") -> None:
        super().__init__(Transport(base_url))
        self.label = label
        self.built_in = threading.get_ident()
        self.things = FakeThings()

    async def hello(self, name: str = "world") -> str:
        return f"hello {name} from {self.label}"


@pytest.fixture(scope="module")
def fake_twins() -> dict[str, Any]:
    source = gen.generate([FakeClient])
    namespace: dict[str, Any] = {"__name__": "fake_generated"}
    exec(compile(source, "<generated>", "exec"), namespace)
    return namespace


@pytest.fixture
def fake(fake_twins: dict[str, Any]) -> Iterator[Any]:
    with fake_twins["FakeClient"](label="twin") as client:
        yield client


def test_fake_twins_have_the_async_signatures(fake_twins: dict[str, Any]) -> None:
    twin = fake_twins["FakeClient"]
    assert parity_problems(FakeClient, twin, LIFECYCLE) == []
    assert parity_problems(FakeThings, fake_twins["FakeThings"], set()) == []
    assert parity_problems(FakeInner, fake_twins["FakeInner"], set()) == []
    assert resolved_hints(fake_twins["FakeThings"], "wait")["return"] is Item  # via _FakeBase
    assert "def get(self, thing_id: str, /, *, loud: bool = False) -> Item:" in (
        gen.format_source(gen.generate([FakeClient]))
    )


def test_fake_twins_run_every_shape(fake: Any) -> None:
    assert fake.hello() == "hello world from twin"
    assert fake._async.built_in != threading.get_ident()  # built in the loop thread
    assert fake.things.get("a", loud=True) == Item("A")
    assert fake.things.inner.ping() == "pong"
    assert fake.things.size == 3
    assert fake.things.describe() != f"thread {threading.get_ident()}"
    assert fake.things.combine("a", "b", sep="+", z=1, y=2) == "a+b|y=2|z=1"
    with fake.things.opened("x") as value:
        assert value == "<x>"
        assert RUNS["opened"] == "x"
    assert RUNS["opened"] is None


def test_paginator_twin_is_lazy_iterable_and_has_all(fake: Any) -> None:
    things = fake.things
    pages = things.list(page_size=2, total=5)
    assert isinstance(pages, sync.SyncPaginator)
    assert things._async.fetched == []  # nothing fetched yet
    assert pages.all() == [Item(str(i)) for i in range(5)]
    assert things._async.fetched == [None, "2", "4"]
    assert [i.id for i in pages] == ["0", "1", "2", "3", "4"]  # starts again
    assert [list(p.items) for p in pages.pages()][-1] == [Item("4")]
    things._async.fetched.clear()
    for item in things.list(page_size=2, total=100):
        if item.id == "2":
            break
    assert things._async.fetched == [None, "2"]  # no page beyond the one that was needed


def test_iterator_twin_closes_the_async_generator(fake: Any) -> None:
    for i in fake.things.stream(1000):
        if i == 3:
            break
    assert RUNS["closed"] is True  # the dropped iterator closed it at once
    with fake.things.stream(1000) as numbers:
        assert next(numbers) == 0
        assert RUNS["closed"] is False
    assert RUNS["closed"] is True
    numbers = fake.things.stream(1000)
    assert next(numbers) == 0
    numbers.close()
    assert RUNS["closed"] is True
    assert list(numbers) == []  # a closed iterator is exhausted
    assert list(fake.things.stream(3)) == [0, 1, 2]
    # Closing the client closes the iterators still open.
    kept = fake.things.stream(1000)
    assert next(kept) == 0
    fake.close()
    assert RUNS["closed"] is True


def test_context_manager_twin_enters_and_leaves_in_one_task(fake: Any) -> None:
    # Cancel scopes and task groups must be left in the task that entered them.
    with fake.things.guarded() as value:
        assert value == "inside"
        assert RUNS["guarded"] == "entered"
    assert RUNS["guarded_unwound"] is True
    with fake.things.guarded():
        raise KeyError("suppressed by the async context manager")
    assert RUNS["guarded"] == "suppressed"
    # The async context manager's task group wraps it in an ExceptionGroup on its way out.
    with pytest.raises(Exception) as raised, fake.things.guarded():  # noqa: PT011
        raise ValueError("passes through")
    assert raised.group_contains(ValueError, match="passes through")
    assert RUNS["guarded_unwound"] is True
    held = fake.things.guarded()
    with held, pytest.raises(RuntimeError, match="already in use"):
        held.__enter__()


def test_ctrl_c_while_entering_a_context_manager_cancels_it(fake: Any) -> None:
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt), fake.things.guarded(delay=30):
            pytest.fail("entered")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2.0
    assert RUNS["guarded"] == "entering"
    assert RUNS["guarded_unwound"] is True  # unwound in the loop before the re-raise
    assert fake.hello() == "hello world from twin"


def test_errors_cross_unchanged(fake: Any) -> None:
    with pytest.raises(ValueError, match="bad thing"):
        fake.things.fail("value")
    started = time.monotonic()
    # A TimeoutError raised by the call itself is not mistaken for a waiting slice.
    with pytest.raises(TimeoutError, match="own timeout"):
        fake.things.fail("timeout")
    assert time.monotonic() - started < 1.0


def test_sync_methods_refuse_to_run_in_their_own_loop_thread(fake: Any) -> None:
    with pytest.raises(RuntimeError, match="own event-loop thread"):
        fake._runner.call_sync(fake.hello)


def test_a_call_cancelled_before_it_starts_is_settled(fake: Any) -> None:
    from aiocompute.sync._loop import _Call

    runner = fake._runner
    call = _Call(anyio.sleep(10))

    def start_and_cancel() -> None:  # both in one loop turn: the task has not run yet
        call.start(runner._loop)
        call.cancel(runner._loop)

    runner._loop.call_soon_threadsafe(start_and_cancel)
    assert call.wait(2.0)
    with pytest.raises(sync.ClientClosedError):
        call.outcome()


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_cancels_the_call_and_lets_it_unwind_first(fake: Any) -> None:
    RUNS["slow_unwound"] = False
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            fake.things.slow(30)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2.0
    assert RUNS["slow_unwound"] is True  # cancelled in the loop before the re-raise
    assert fake.hello() == "hello world from twin"  # the client still works


class BadShapeClient(BaseClient):
    async def numbers(self) -> AsyncIterator[int]:  # awaited, then iterated: no twin
        return _agen()


async def _agen() -> AsyncIterator[int]:
    yield 1


T = TypeVar("T")


class UnboundThings(WaitableResource[T]):
    async def get(self) -> int:
        return 1


class UnboundClient(BaseClient):
    things: UnboundThings  # type: ignore[type-arg]


class BoundByAnnotationClient(BaseClient):
    things: UnboundThings[Item]


class ClashClient(BaseClient):
    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (BadShapeClient, "BadShapeClient.numbers: an `async def` returning AsyncIterator"),
        (UnboundClient, "type variable T is not bound"),
        # The resource's type is bound by its class (WaitableResource[Item]), not by the
        # attribute's annotation.
        (BoundByAnnotationClient, "type variable T is not bound"),
        (ClashClient, "would hide the sync client's own close()"),
    ],
)
def test_generator_refuses_shapes_it_cannot_twin(cls: type, message: str) -> None:
    with pytest.raises(gen.GenerationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gen.generate([cls])


# ============================================================================================
# Against the emulator
# ============================================================================================

FAST = WorkbenchEmulatorConfig(
    session_launch_delay=0.02,
    session_pending_delay=0.02,
    session_starting_delay=0.02,
    session_stop_delay=0.01,
    session_kill_delay=0.01,
    job_pending_delay=0.01,
    job_chunk_count=3,
    job_chunk_interval=0.01,
)
CADENCE = PollCadence(initial=0.02, max=0.1, fast=0.02, min_gap=0.01)
LP = {"name": "t", "cluster": "Local"}


pytestmark = pytest.mark.emulator(seed=5, workbench=FAST)


def _client(emu: Emulator, **kwargs: Any) -> sync.WorkbenchClient:
    return sync.WorkbenchClient(emu.workbench_url, token="user-token", cadence=CADENCE, **kwargs)


@pytest.fixture
def wb(threaded_emulator: Emulator) -> Iterator[sync.WorkbenchClient]:
    with _client(threaded_emulator) as client:
        yield client


def test_version_and_errors(wb: sync.WorkbenchClient) -> None:
    version = wb.version()
    assert isinstance(version, ServerVersion)
    assert version.features
    with pytest.raises(NotFoundError):
        wb.sessions.get("no-such-session")


def test_launch_and_wait_all(wb: sync.WorkbenchClient) -> None:
    ids = [wb.sessions.launch("VS Code", name=f"s{i}", launch_parameters=LP).id for i in range(3)]
    sessions = wb.sessions.wait_all(ids, timeout=5)
    assert [s.id for s in sessions] == ids
    assert all(s.activity_state == "running" for s in sessions)
    stuck = wb.sessions.launch("VS Code", name="emu-stuck", launch_parameters=LP)
    with pytest.raises(WaitTimeout):
        wb.sessions.wait(stuck.id, timeout=0.2)


def test_watch_and_as_completed(wb: sync.WorkbenchClient) -> None:
    sid = wb.sessions.launch("VS Code", name="w", launch_parameters=LP).id
    events = []
    for event in wb.sessions.watch([sid], timeout=5):  # runs until settled: leave early
        events.append(event)
        if event.new_state == "running":
            break
    assert all(isinstance(e, TransitionEvent) for e in events)
    assert events[0].old_state is None
    assert events[-1].new_state == "running"
    jobs = [wb.jobs.launch(JobSpec(name=f"j{i}", cluster="Local", exe="R")).id for i in range(2)]
    done = {r.id: r.unwrap() for r in wb.jobs.as_completed(jobs, timeout=5)}
    assert set(done) == set(jobs)
    assert all(j.state == "Finished" for j in done.values())


def test_job_output_break_releases_the_connection(threaded_emulator: Emulator) -> None:
    # One pooled connection only: a stream left open would block the next request.
    with _client(
        threaded_emulator, limits=PoolLimits(max_connections=1), timeouts=Timeouts(total=2)
    ) as wb:
        job = wb.jobs.launch(
            JobSpec(name="long", cluster="Local", exe="R", args=["--emu-chunks=500"])
        )
        seen = []
        for chunk in wb.jobs.output(job.id):
            seen.append(chunk)
            if len(seen) == 2:
                break
        assert all(isinstance(c, OutputChunk) for c in seen)
        started = time.monotonic()
        assert isinstance(wb.version(), ServerVersion)  # the connection is free again
        assert time.monotonic() - started < 1.0
        # The server stopped sending: its stream ends (a chunk it wrote before it saw the
        # connection go may still count), and no byte follows.
        deadline = time.monotonic() + 5
        while threaded_emulator.open_streams and time.monotonic() < deadline:
            time.sleep(0.01)
        streamed = threaded_emulator.stats["workbench.bytes_streamed"]
        time.sleep(0.1)
        assert threaded_emulator.stats["workbench.bytes_streamed"] == streamed
        chunks = wb.jobs.output(job.id)
        assert next(chunks).job_id
        chunks.close()
        assert isinstance(wb.version(), ServerVersion)


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_during_a_wait_cancels_it(
    wb: sync.WorkbenchClient, threaded_emulator: Emulator
) -> None:
    sid = wb.sessions.launch("VS Code", name="emu-stuck", launch_parameters=LP).id
    stops = threaded_emulator.stats["workbench.stop_session"]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            wb.sessions.wait(sid, timeout=10, on_cancel="cancel")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 3.0
    # The wait unwound in the loop (and asked the server to stop) before the re-raise...
    assert threaded_emulator.stats["workbench.stop_session"] == stops + 1
    # ...and no longer polls.
    polls = threaded_emulator.stats["workbench.get_session"]
    time.sleep(0.3)
    assert threaded_emulator.stats["workbench.get_session"] == polls


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_during_a_stream_closes_it(threaded_emulator: Emulator) -> None:
    with _client(
        threaded_emulator, limits=PoolLimits(max_connections=1), timeouts=Timeouts(total=2)
    ) as wb:
        job = wb.jobs.launch(
            JobSpec(
                name="slow",
                cluster="Local",
                exe="R",
                args=["--emu-chunks=3", "--emu-interval=5"],
            )
        )
        chunks = wb.jobs.output(job.id)
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                next(chunks)  # the first chunk is 5 s away
        finally:
            timer.cancel()
        assert "closed" in repr(chunks)
        started = time.monotonic()
        assert isinstance(wb.version(), ServerVersion)  # the stream's connection was released
        assert time.monotonic() - started < 1.0


def test_paginator_twin_against_the_emulator(threaded_emulator: Emulator) -> None:
    with sync.LakeSailClient("lakesail-token", base_url=threaded_emulator.lakesail_url) as ls:
        ids = {ls.sessions.create(name=f"p{i}").id for i in range(5)}
        listing = ls.sessions.list(limit=2)
        assert isinstance(listing, sync.SyncPaginator)
        before = threaded_emulator.stats["lakesail.list_sessions"]
        assert ids <= {s.id for s in listing.all()}
        pages = threaded_emulator.stats["lakesail.list_sessions"] - before
        assert pages >= 3  # 5 sessions or more, 2 per page
        before = threaded_emulator.stats["lakesail.list_sessions"]
        for seen, _session in enumerate(listing, 1):
            if seen == 3:
                break
        # The pages needed, no more.
        assert threaded_emulator.stats["lakesail.list_sessions"] - before == 2


def test_sync_client_inside_a_running_event_loop(threaded_emulator: Emulator) -> None:
    async def notebook_cell() -> ServerVersion:
        with _client(threaded_emulator) as wb:
            return wb.version()

    assert isinstance(asyncio.run(notebook_cell()), ServerVersion)


def test_one_client_shared_by_threads(wb: sync.WorkbenchClient) -> None:
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: wb.version(), range(20)))
    assert len({v.release_name for v in versions}) == 1


def test_close_stops_the_thread(threaded_emulator: Emulator) -> None:
    baseline = threading.active_count()
    client = _client(threaded_emulator)
    assert threading.active_count() == baseline + 1
    client.version()
    thread = client._runner.thread
    client.close()
    assert not thread.is_alive()
    assert threading.active_count() == baseline
    assert client.closed
    client.close()  # idempotent
    with pytest.raises(sync.ClientClosedError):
        client.version()
    with _client(threaded_emulator) as other:
        other.version()
    assert threading.active_count() == baseline


def test_unclosed_client_warns_and_stops_its_thread(threaded_emulator: Emulator) -> None:
    baseline = threading.active_count()
    held = [_client(threaded_emulator)]
    held[0].version()
    thread = held[0]._runner.thread
    with pytest.warns(ResourceWarning, match="unclosed sync"):
        held.clear()  # the last reference: the finalizer runs now
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()
    assert threading.active_count() == baseline


def test_bad_arguments_leave_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORKBENCH_SERVER", "WORKBENCH_API_KEY", "RS_SESSION_RPC_COOKIE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PWB_SESSION_RUNTIME_DIR", raising=False)
    baseline = threading.active_count()
    with pytest.raises(ConfigError):
        sync.WorkbenchClient("http://127.0.0.1:9")
    assert threading.active_count() == baseline
