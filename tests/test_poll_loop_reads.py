"""Which reads reach which waits: a wait never takes a read that started before it came.

The poll loop posts a read to an id's waits without building a list of them per id unless a
wait subscribed while the read was in flight (``PollLoop._apply``); these tests pin the rule
on both sides of that shortcut. On virtual time (the module's mark): no real waiting.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from aiocompute._core.polling import Poller
from aiocompute._core.wait_types import PollCadence, TransitionEvent
from aiocompute.workbench._states import SESSION_STATES

pytestmark = pytest.mark.virtual_time


class Read:
    """What one read of one id answered: its state and which read (1, 2, ...) it was."""

    def __init__(self, state: str, number: int) -> None:
        self.state = state
        self.number = number


class Server:
    """Ids in fixed states; every read is numbered and can be held in flight."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.reads = 0
        self.hold_first = anyio.Event()  # set: the first read may answer
        self.first_in_flight = anyio.Event()

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, Read]:
        self.reads += 1
        number = self.reads
        answer = {one: Read(self.states[one], number) for one in ids}
        if number == 1:
            self.first_in_flight.set()
            await self.hold_first.wait()
        return answer


def make_poller(server: Server) -> Poller[Read]:
    return Poller(
        SESSION_STATES,
        server.fetch_many,
        state_of=lambda r: r.state,
        cadence=PollCadence(initial=0.1, max=1.0, min_gap=0.01, fast=0.1),
        rng=random.Random(7),
    )


async def test_a_wait_that_comes_during_a_read_gets_a_read_of_its_own() -> None:
    server = Server({"x": "running"})
    poller = make_poller(server)
    got: dict[str, Read] = {}
    second_done = anyio.Event()

    async def first() -> None:  # keeps "x" watched and drives the loop
        await poller.wait("x", "finished", timeout=5)

    async def second() -> None:
        await server.first_in_flight.wait()
        got["second"] = await poller.wait("x", "running", timeout=5)
        second_done.set()

    with anyio.move_on_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
            await server.first_in_flight.wait()
            await anyio.sleep(0.01)  # "second" subscribes while read 1 is in flight
            server.hold_first.set()
            await second_done.wait()
            tg.cancel_scope.cancel()
    # Read 1 already said "running", but it started before the second wait came.
    assert got["second"].number >= 2


async def test_waits_on_one_id_share_each_read_once_subscribed() -> None:
    server = Server({"x": "pending", "y": "running"})
    server.hold_first.set()
    poller = make_poller(server)
    seen: list[tuple[str, int]] = []

    async def on_transition(event: TransitionEvent[Read]) -> None:  # an async hook is awaited
        await anyio.lowlevel.checkpoint()
        seen.append((event.id, event.resource.number))

    async def flip() -> None:
        await anyio.sleep(0.5)
        server.states["x"] = "running"

    async with anyio.create_task_group() as tg:
        tg.start_soon(flip)
        both = await poller.wait_all(["x", "y"], "running", timeout=5, on_transition=on_transition)
        again = await poller.wait("x", "running", timeout=5)
    assert [r.state for r in both] == ["running", "running"]
    assert both[1].number == 1  # "y" was running at the first read
    assert both[0].number > 1
    assert again.number > both[0].number  # a new wait reads afresh
    assert ("y", 1) in seen
    assert ("x", both[0].number) in seen
