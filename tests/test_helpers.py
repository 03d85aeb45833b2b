"""The test infrastructure itself: the virtual-time loop and emulators on its clock, Ctrl-C
(helpers.py), and the emulator fixtures and their ``emulator`` mark (conftest.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import anyio
import pytest

from aiocompute import RetryPolicy
from aiocompute.emulator import Emulator, QiskitEmulatorConfig
from helpers import (
    QUICK_RETRY,
    EmulatorFactory,
    VirtualTimeLoop,
    emulators,
    make_emulator_on_loop_clock,
    quick_retry,
    sigint_raises_keyboard_interrupt,
)

pytestmark = pytest.mark.emulator(seed=7, qiskit=QiskitEmulatorConfig(token_lifetime=12))

# -- virtual time -------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_virtual_clock_jumps_to_the_next_timer() -> None:
    real_start = time.monotonic()
    assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
    assert anyio.current_time() == 0.0
    await anyio.sleep(3600)
    assert anyio.current_time() == 3600.0
    with anyio.move_on_after(0.25) as scope:
        await anyio.sleep(10)
    assert scope.cancelled_caught
    assert anyio.current_time() == 3600.25
    assert time.monotonic() - real_start < 60  # an hour of sleeping took no real hour


@pytest.mark.virtual_time
async def test_virtual_clock_stands_still_while_a_thread_works() -> None:
    loop = asyncio.get_running_loop()
    # A timer due in 1 s: the threads' 0.2 real seconds take no virtual time (a thread that
    # outlasted a timer for real would let it fire).
    with anyio.fail_after(1):
        await loop.run_in_executor(None, time.sleep, 0.2)
        await asyncio.to_thread(time.sleep, 0.2)
    assert anyio.current_time() == 0.0
    await anyio.sleep(5)
    assert anyio.current_time() == 5.0


@pytest.mark.virtual_time
async def test_an_emulator_on_the_loop_clock_keeps_virtual_time() -> None:
    config = QiskitEmulatorConfig(token_lifetime=100)
    async with make_emulator_on_loop_clock(qiskit=config) as emu, aiohttp.ClientSession() as http:
        await anyio.sleep(10)
        form = {"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": "qiskit-key"}
        async with http.post(emu.qiskit_iam_url, data=form) as resp:
            body = await resp.json()
        assert emu.requests[-1].monotonic == 10.0  # over loopback HTTP, in no virtual time
        assert emu.qiskit.tokens[body["access_token"]].expires_at == 110.0
        # Wall-clock times still read right: 10 virtual seconds after the start, plus 100.
        assert abs(body["expiration"] - (time.time() + 10 + 100)) < 5


@pytest.mark.virtual_time
async def test_a_marked_tests_emulator_fixtures_run_on_its_virtual_clock(
    emu: Emulator, emulator: EmulatorFactory
) -> None:
    other = await emulator(seed=1)
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    await anyio.sleep(7200)  # two hours, in no real time
    assert emu._runtime.now() == other._runtime.now() == loop.time() == 7200.0


@pytest.mark.virtual_time(False)
async def test_virtual_time_false_keeps_the_real_loop(emu: Emulator) -> None:
    assert not isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
    assert abs(emu._runtime.now() - time.monotonic()) < 1


# -- emulators from conftest.py -----------------------------------------------------------------


async def test_emu_is_set_up_by_the_module_mark(emu: Emulator) -> None:
    assert emu.running
    assert (emu.seed, emu.config.qiskit.token_lifetime) == (7, 12)


@pytest.mark.emulator(seed=8)
async def test_a_test_mark_overrides_the_module_mark(emu: Emulator) -> None:
    default = QiskitEmulatorConfig().token_lifetime
    assert (emu.seed, emu.config.qiskit.token_lifetime) == (8, default)


async def test_the_factory_fixture_starts_emulators(emulator: EmulatorFactory) -> None:
    first = await emulator(seed=1)
    second = await emulator(seed=2, qiskit=QiskitEmulatorConfig(token_lifetime=3))
    assert first.running
    assert second.running
    assert (first.seed, second.seed, second.config.qiskit.token_lifetime) == (1, 2, 3)
    assert first.port != second.port


async def test_the_factory_stops_every_emulator_it_started() -> None:
    async with emulators() as start:
        started = [await start(seed=seed) for seed in (1, 2)]
        assert all(emu.running for emu in started)
    assert not any(emu.running for emu in started)


def test_the_threaded_emulator_serves_sync_code(threaded_emulator: Emulator) -> None:
    assert threaded_emulator.seed == 7  # the module's mark
    with urllib.request.urlopen(threaded_emulator.url + "/", timeout=10) as resp:
        assert json.load(resp)["emulator"] == "aiocompute"


# -- quick policies -----------------------------------------------------------------------------


def test_quick_retry_keeps_its_base_and_takes_changes() -> None:
    assert RetryPolicy(backoff_initial=0.01, backoff_max=0.02, retry_after_max=0.1) == QUICK_RETRY
    assert quick_retry(RetryPolicy(max_attempts=2)).max_attempts == 2
    assert quick_retry(retry_after_max=0.15).retry_after_max == 0.15


# -- Ctrl-C -------------------------------------------------------------------------------------

_CHILD = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"


def _child_raises_keyboard_interrupt() -> bool:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True)
    return {"True": True, "False": False}[done.stdout.strip()]


def test_ctrl_c_works_inside_even_where_sigint_is_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup or trap "" INT
    try:
        assert not _child_raises_keyboard_interrupt()  # children inherit SIG_IGN...
        with sigint_raises_keyboard_interrupt():
            assert _child_raises_keyboard_interrupt()  # ...but not from inside
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
