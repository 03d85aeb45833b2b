"""The fault-injecting proxy between a client and the emulator: each fault does what its
table says at the server, and the client reports each as it must (never a blind retry of a
create, an unknown outcome where the server may have acted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from aiocompute import (
    ETEngineClient,
    OutcomeUnknown,
    RateLimitError,
    RetryPolicy,
    Timeouts,
)
from aiocompute.emulator import Emulator
from aiocompute.emulator.chaos import ChaosProxy, Fault
from helpers import make_emulator_on_loop_clock, quick_governor

pytestmark = pytest.mark.virtual_time

QUICK = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002, retry_after_max=0.01)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with make_emulator_on_loop_clock(seed=3) as server:
        yield server


def client(proxy: ChaosProxy, **options: object) -> ETEngineClient:
    return ETEngineClient(
        api_key="et-key",
        base_url=f"{proxy.url}/etengine/v1",
        retry=QUICK,
        governor=quick_governor(),  # the proxy's 429 asks for 1 s: the governor waits 10 ms
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("fault", "error", "created"),
    [
        (Fault.DROP_BEFORE, OutcomeUnknown, 0),
        (Fault.COMMIT_THEN_DROP, OutcomeUnknown, 1),
        # A gateway's 5xx may come after the server acted: unknown, whichever it was.
        (Fault.STATUS_503, OutcomeUnknown, 0),
        (Fault.COMMIT_THEN_502, OutcomeUnknown, 1),
    ],
)
async def test_each_fault_on_a_create(
    emu: Emulator, fault: Fault, error: type[Exception], created: int
) -> None:
    # Without reconciliation (tests/test_reconcile.py has it): the bare transport's view.
    async with (
        ChaosProxy(emu.url, rates={fault: 1.0}) as proxy,
        client(proxy, reconcile=False) as et,
    ):
        with pytest.raises(error):
            await et.batches.create("tool-hello")
        assert len(await et.batches.list()) == created  # reads pass untouched
    assert len(emu.etengine.batches) == created
    assert proxy.injected == {fault: 1}  # tried once: a create is never blindly repeated
    assert [r.forwarded for r in proxy.log if r.method == "POST"] == [created == 1]


async def test_a_429_refusal_is_retried_and_creates_nothing_more(emu: Emulator) -> None:
    async with ChaosProxy(emu.url, rates={Fault.STATUS_429: 1.0}) as proxy, client(proxy) as et:
        with pytest.raises(RateLimitError):
            await et.batches.create("tool-hello")
    assert proxy.injected == {Fault.STATUS_429: QUICK.max_attempts}
    assert emu.etengine.batches == {}


async def test_a_stall_past_the_timeout_is_an_unknown_outcome_that_happened(emu: Emulator) -> None:
    async with (
        ChaosProxy(emu.url, rates={Fault.STALL: 1.0}, stall=0.5) as proxy,
        client(proxy, timeouts=Timeouts(total=0.2)) as et,
    ):
        with pytest.raises(OutcomeUnknown):
            await et.batches.create("tool-hello")
        with anyio.fail_after(5):
            while not proxy.log:  # noqa: ASYNC110 (the proxy forwards once its stall is over)
                await asyncio.sleep(0.05)
    assert len(emu.etengine.batches) == 1


async def test_reads_pass_untouched(emu: Emulator) -> None:
    async with ChaosProxy(emu.url, rates={Fault.DROP_BEFORE: 1.0}) as proxy, client(proxy) as et:
        assert await et.batches.list() == []
    assert [(r.method, r.fault) for r in proxy.log] == [("GET", None)]


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="add up to"):
        ChaosProxy("http://127.0.0.1:1", rates={Fault.STALL: 0.6, Fault.STATUS_503: 0.6})
    with pytest.raises(ValueError, match=r"rates\[STALL\]"):
        ChaosProxy("http://127.0.0.1:1", rates={Fault.STALL: 2})
