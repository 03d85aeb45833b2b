"""The one rule for numeric arguments: TypeError for the wrong kind, ValueError out of range."""

from __future__ import annotations

import argparse
import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from aioresponses import aioresponses
from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import (
    ETEngineClient,
    Hardware,
    JSONStreamDecoder,
    LakeSailClient,
    PollCadence,
    PoolLimits,
    QiskitRuntimeClient,
    RateGovernor,
    ResumePolicy,
    RetryPolicy,
    SessionConfig,
    Timeouts,
    WorkbenchClient,
    fan_out_iter,
)
from aiocompute._core.checks import count, number, probability, seconds, validator
from aiocompute._core.retries import NO_RETRY
from aiocompute.cli._common import at_least_one, positive_seconds, whole_number
from aiocompute.emulator import (
    Emulator,
    EmulatorConfig,
    ETEngineEmulatorConfig,
    FaultConfig,
    LakeSailEmulatorConfig,
    QiskitEmulatorConfig,
    QiskitJobsConfig,
    WorkbenchEmulatorConfig,
)
from aiocompute.emulator.chaos import ChaosProxy, Fault
from aiocompute.qiskit import IAMAuth


@pytest.mark.parametrize("value", [True, False, "1", None, [1], b"1"])
def test_the_wrong_kind_is_a_type_error_naming_the_argument(value: object) -> None:
    with pytest.raises(TypeError, match=r"^timeout must be a number of seconds"):
        seconds(value, "timeout")
    with pytest.raises(TypeError, match=r"^limit must be an int"):
        count(value, "limit")


@pytest.mark.parametrize("value", [0, -1, -0.5, math.inf, -math.inf, math.nan])
def test_out_of_range_seconds_are_a_value_error(value: float) -> None:
    with pytest.raises(ValueError, match=r"^Timeouts\.read must be"):
        seconds(value, "Timeouts.read")


def test_bounds() -> None:
    assert number(0, "x", minimum=0) == 0
    assert number(1, "x", maximum=1) == 1
    with pytest.raises(ValueError, match=r"x must be <= 1, got 1.5"):
        number(1.5, "x", maximum=1)
    with pytest.raises(ValueError, match=r"x must be > 0, got 0"):
        number(0, "x", above=0)
    assert number(math.inf, "x", finite=False) == math.inf
    with pytest.raises(ValueError, match="must be a number"):
        number(math.nan, "x", finite=False)
    assert count(3, "n", minimum=1) == 3
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        count(0, "n", minimum=1)
    with pytest.raises(TypeError, match=r"n must be an int, got 1\.0"):
        count(1.0, "n")


@given(st.floats(min_value=1e-9, max_value=1e9) | st.integers(min_value=1, max_value=10**9))
def test_any_positive_finite_number_is_a_valid_number_of_seconds(value: float) -> None:
    assert seconds(value, "t") == value


# --------------------------------------------------------------------------------------------
# Every public numeric argument follows the rule. One row per argument: where it is given,
# the name its errors use, its kind ("int": a float is the wrong kind too; "number": NaN and
# infinities are out of range), whether 0 is allowed, and the call. A hand-written check
# that breaks the rule (a bool taken as a count, a ValueError for a string, a NaN let
# through) fails here. Client calls go to aioresponses with no route: none may send.


@frozen
class Arg:
    where: str
    name: str
    kind: str  # "int" or "number"
    zero_ok: bool
    call: Callable[[Any, Any], Any]
    api: str | None = None  # the client the call needs ("wb", "q", "ls", "et")
    bool_ok: bool = False  # True means something there (ET Engine's expect=True)

    def __str__(self) -> str:
        return self.where


CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"


def _wb() -> Any:
    return WorkbenchClient("https://wb.test", token="t", retry=NO_RETRY)


def _q(**options: Any) -> Any:
    return QiskitRuntimeClient(
        token="k",
        instance=CRN,
        base_url="https://q.test/api",
        iam_url="https://iam.test/identity/token",
        retry=NO_RETRY,
        **options,
    )


def _ls() -> Any:
    return LakeSailClient("t", base_url="https://ls.test/api/v1", retry=NO_RETRY)


def _et(**options: Any) -> Any:
    return ETEngineClient(api_key="k", base_url="https://et.test/v1", retry=NO_RETRY, **options)


def _faults(**switches: Any) -> None:
    FaultConfig(**switches).check()


ARGS = [
    # -- the rate governor every client has
    *(
        Arg(f"RateGovernor({name}=)", name, kind, zero, lambda _, v, n=name: RateGovernor(**{n: v}))
        for name, kind, zero in (
            ("min_rate", "number", False),
            ("increase", "number", True),
            ("decrease_window", "number", True),
            ("max_pause", "number", False),
            ("measure_window", "number", False),
            ("max_concurrency", "int", False),
        )
    ),
    # -- settings shared by the four clients
    Arg(
        "Timeouts(connect=)", "Timeouts.connect", "number", False, lambda _, v: Timeouts(connect=v)
    ),
    Arg("Timeouts(read=)", "Timeouts.read", "number", False, lambda _, v: Timeouts(read=v)),
    Arg("Timeouts(total=)", "Timeouts.total", "number", False, lambda _, v: Timeouts(total=v)),
    Arg("Timeouts(stall=)", "Timeouts.stall", "number", False, lambda _, v: Timeouts(stall=v)),
    Arg(
        "PoolLimits(max_connections=)",
        "PoolLimits.max_connections",
        "int",
        True,
        lambda _, v: PoolLimits(max_connections=v),
    ),
    Arg(
        "PoolLimits(max_connections_per_host=)",
        "PoolLimits.max_connections_per_host",
        "int",
        True,
        lambda _, v: PoolLimits(max_connections_per_host=v),
    ),
    Arg(
        "PoolLimits(keepalive_timeout=)",
        "PoolLimits.keepalive_timeout",
        "number",
        False,
        lambda _, v: PoolLimits(keepalive_timeout=v),
    ),
    Arg(
        "RetryPolicy(max_attempts=)",
        "RetryPolicy.max_attempts",
        "int",
        False,
        lambda _, v: RetryPolicy(max_attempts=v),
    ),
    Arg(
        "RetryPolicy(backoff_initial=)",
        "RetryPolicy.backoff_initial",
        "number",
        True,
        lambda _, v: RetryPolicy(backoff_initial=v),
    ),
    Arg(
        "RetryPolicy(backoff_max=)",
        "RetryPolicy.backoff_max",
        "number",
        True,
        lambda _, v: RetryPolicy(backoff_max=v, backoff_initial=0),
    ),
    Arg(
        "RetryPolicy(total_timeout=)",
        "RetryPolicy.total_timeout",
        "number",
        True,
        lambda _, v: RetryPolicy(total_timeout=v),
    ),
    Arg(
        "RetryPolicy(retry_statuses=)",
        "RetryPolicy.retry_statuses",
        "int",
        False,
        lambda _, v: RetryPolicy(retry_statuses={v}),
    ),
    Arg(
        "RetryPolicy(retry_after_max=)",
        "RetryPolicy.retry_after_max",
        "number",
        True,
        lambda _, v: RetryPolicy(retry_after_max=v),
    ),
    *(
        Arg(
            f"PollCadence({name}=)",
            f"PollCadence.{name}",
            "number",
            name == "jitter",
            lambda _, v, name=name: PollCadence(**{name: v}),
        )
        for name in ("initial", "max", "factor", "jitter", "fast", "min_gap")
    ),
    Arg(
        "ResumePolicy(max_reconnects=)",
        "ResumePolicy.max_reconnects",
        "int",
        True,
        lambda _, v: ResumePolicy(max_reconnects=v),
    ),
    Arg(
        "ResumePolicy(backoff_initial=)",
        "ResumePolicy.backoff_initial",
        "number",
        True,
        lambda _, v: ResumePolicy(backoff_initial=v),
    ),
    Arg(
        "ResumePolicy(backoff_max=)",
        "ResumePolicy.backoff_max",
        "number",
        True,
        lambda _, v: ResumePolicy(backoff_max=v),
    ),
    Arg(
        "fan_out(concurrency=)",
        "concurrency",
        "int",
        False,
        lambda _, v: fan_out_iter(_one, [1], concurrency=v),
    ),
    # -- Posit Workbench
    Arg(
        "wb.sessions.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.wait("s1", timeout=v),
        "wb",
    ),
    Arg(
        "wb.jobs.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.jobs.wait("j1", timeout=v),
        "wb",
    ),
    Arg(
        "wb.sessions.launched(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.launched("VS Code", timeout=v),
        "wb",
    ),
    Arg(
        "wb.sessions.launched(cleanup_timeout=)",
        "cleanup_timeout",
        "number",
        False,
        lambda c, v: c.sessions.launched("VS Code", cleanup_timeout=v),
        "wb",
    ),
    Arg(
        "wb.jobs.output(stall_timeout=)",
        "stall_timeout",
        "number",
        False,
        lambda c, v: c.jobs.output("j1", stall_timeout=v),
        "wb",
    ),
    Arg(
        "wb.jobs.collect(stall_timeout=)",
        "stall_timeout",
        "number",
        False,
        lambda c, v: c.jobs.collect("j1", stall_timeout=v),
        "wb",
    ),
    # -- Qiskit Runtime
    Arg(
        "QiskitRuntimeClient(poll_concurrency=)",
        "poll_concurrency",
        "int",
        False,
        lambda _, v: _q(poll_concurrency=v),
    ),
    Arg(
        "IAMAuth(refresh_fraction=)",
        "refresh_fraction",
        "number",
        False,
        lambda _, v: IAMAuth("k", refresh_fraction=v),
    ),
    Arg(
        "q.sessions.create(max_ttl=)",
        "max_ttl",
        "int",
        False,
        lambda c, v: c.sessions.create("ibm_kyiv", max_ttl=v),
        "q",
    ),
    Arg(
        "q.sessions.opened(max_ttl=)",
        "max_ttl",
        "int",
        False,
        lambda c, v: c.sessions.opened("ibm_kyiv", max_ttl=v),
        "q",
    ),
    Arg(
        "q.sessions.opened(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.opened("ibm_kyiv", timeout=v),
        "q",
    ),
    Arg(
        "q.sessions.opened(cleanup_timeout=)",
        "cleanup_timeout",
        "number",
        False,
        lambda c, v: c.sessions.opened("ibm_kyiv", cleanup_timeout=v),
        "q",
    ),
    Arg(
        "q.sessions.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.wait("s1", timeout=v),
        "q",
    ),
    Arg(
        "q.jobs.run(max_execution_time=)",
        "max_execution_time",
        "int",
        False,
        lambda c, v: c.jobs.run("sampler", "ibm_kyiv", params={}, max_execution_time=v),
        "q",
    ),
    Arg("q.jobs.list(limit=)", "limit", "int", False, lambda c, v: c.jobs.list(limit=v), "q"),
    Arg(
        "q.jobs.list(max_items=)",
        "max_items",
        "int",
        True,
        lambda c, v: c.jobs.list(max_items=v),
        "q",
    ),
    Arg(
        "q.jobs.list_page(limit=)",
        "limit",
        "int",
        False,
        lambda c, v: c.jobs.list_page(limit=v),
        "q",
    ),
    Arg(
        "q.jobs.list_page(offset=)",
        "offset",
        "int",
        True,
        lambda c, v: c.jobs.list_page(offset=v),
        "q",
    ),
    Arg(
        "q.jobs.results(max_bytes=)",
        "max_bytes",
        "int",
        False,
        lambda c, v: c.jobs.results("j1", max_bytes=v),
        "q",
    ),
    Arg(
        "q.jobs.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.jobs.wait("j1", timeout=v),
        "q",
    ),
    # -- LakeSail
    Arg(
        "ls.sessions.list(limit=)",
        "limit",
        "int",
        True,
        lambda c, v: c.sessions.list(limit=v),
        "ls",
    ),
    Arg(
        "ls.sessions.list(max_items=)",
        "max_items",
        "int",
        True,
        lambda c, v: c.sessions.list(max_items=v),
        "ls",
    ),
    Arg(
        "ls.sessions.list_page(limit=)",
        "limit",
        "int",
        True,
        lambda c, v: c.sessions.list_page(limit=v),
        "ls",
    ),
    Arg(
        "ls.sessions.create(config=SessionConfig(...))",
        "config.idle_timeout_seconds",
        "int",
        True,
        lambda c, v: c.sessions.create(config=SessionConfig(idle_timeout_seconds=v)),
        "ls",
    ),
    Arg(
        "ls.sessions.token(duration_seconds=)",
        "duration_seconds",
        "int",
        False,
        lambda c, v: c.sessions.token("S1", duration_seconds=v),
        "ls",
    ),
    Arg(
        "ls.sessions.created(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.created(timeout=v),
        "ls",
    ),
    Arg(
        "ls.sessions.created(cleanup_timeout=)",
        "cleanup_timeout",
        "number",
        False,
        lambda c, v: c.sessions.created(cleanup_timeout=v),
        "ls",
    ),
    Arg(
        "ls.sessions.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.sessions.wait("S1", timeout=v),
        "ls",
    ),
    Arg(
        "ls.workload_configs.list(limit=)",
        "limit",
        "int",
        True,
        lambda c, v: c.workload_configs.list(limit=v),
        "ls",
    ),
    Arg(
        "ls.workload_configs.list(max_items=)",
        "max_items",
        "int",
        True,
        lambda c, v: c.workload_configs.list(max_items=v),
        "ls",
    ),
    Arg(
        "ls.workload_configs.create(endpoint_limits=)",
        "endpoint_limits['spark']",
        "int",
        True,
        lambda c, v: c.workload_configs.create("n", endpoint_limits={"spark": v}),
        "ls",
    ),
    # -- ET Engine
    Arg(
        "ETEngineClient(poll_concurrency=)",
        "poll_concurrency",
        "int",
        False,
        lambda _, v: _et(poll_concurrency=v),
    ),
    Arg("Hardware(cpu=)", "Hardware.cpu", "int", False, lambda _, v: Hardware(cpu=v)),
    Arg("Hardware(memory=)", "Hardware.memory", "int", False, lambda _, v: Hardware(memory=v)),
    Arg(
        "et.jobs.list(expect=)",
        "expect",
        "int",
        True,
        lambda c, v: c.jobs.list("b1", expect=v),
        "et",
        bool_ok=True,
    ),
    Arg(
        "et.jobs.list(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.jobs.list("b1", expect=3, timeout=v),
        "et",
    ),
    Arg(
        "et.batches.wait(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.batches.wait("b1", timeout=v),
        "et",
    ),
    Arg(
        "et.batches.created(timeout=)",
        "timeout",
        "number",
        False,
        lambda c, v: c.batches.created("t1", timeout=v),
        "et",
    ),
    Arg(
        "et.batches.created(cleanup_timeout=)",
        "cleanup_timeout",
        "number",
        False,
        lambda c, v: c.batches.created("t1", cleanup_timeout=v),
        "et",
    ),
    # -- the emulator and the fault-injecting proxy
    Arg("Emulator(port=)", "port", "int", True, lambda _, v: Emulator(port=v)),
    Arg(
        "ChaosProxy(rates=)",
        "rates[STALL]",
        "number",
        True,
        lambda _, v: ChaosProxy("http://127.0.0.1:1", rates={Fault.STALL: v}),
    ),
    Arg(
        "ChaosProxy(stall=)",
        "stall",
        "number",
        True,
        lambda _, v: ChaosProxy("http://127.0.0.1:1", rates={}, stall=v),
    ),
    Arg(
        "ChaosProxy(max_faults=)",
        "max_faults",
        "int",
        True,
        lambda _, v: ChaosProxy("http://127.0.0.1:1", rates={}, max_faults=v),
    ),
    Arg(
        "EmulatorConfig(shutdown_timeout=)",
        "EmulatorConfig.shutdown_timeout",
        "number",
        True,
        lambda _, v: EmulatorConfig(shutdown_timeout=v),
    ),
    Arg(
        "EmulatorConfig(request_log_size=)",
        "EmulatorConfig.request_log_size",
        "int",
        True,
        lambda _, v: EmulatorConfig(request_log_size=v),
    ),
    *(
        Arg(
            f"{cls.__name__}({f.name}=)",
            f"{cls.__name__}.{f.name}",
            kind,
            zero_ok,
            lambda _, v, cls=cls, f=f: cls(**{f.name: v}),
        )
        for cls, fields in [
            (
                WorkbenchEmulatorConfig,
                {
                    "session_launch_delay": ("number", True),
                    "job_pending_delay": ("number", True),
                    "job_chunk_count": ("int", True),
                    "job_chunk_interval": ("number", True),
                    "job_chunk_bytes": ("int", True),
                    "job_stderr_every": ("int", True),
                    "job_stop_delay": ("number", True),
                    "job_write_log_size": ("int", True),
                },
            ),
            (
                LakeSailEmulatorConfig,
                {
                    "token_duration_seconds": ("int", True),
                    "max_token_duration_seconds": ("int", True),
                },
            ),
            (
                QiskitEmulatorConfig,
                {
                    "token_lifetime": ("number", False),
                    "ttl_scale": ("number", False),
                    "drain_delay": ("number", True),
                },
            ),
            (
                QiskitJobsConfig,
                {
                    "queue_delay": ("number", True),
                    "fail_rate": ("number", True),
                    "rate_limit": ("int", False),
                    "rate_window": ("number", False),
                    "usage_limit": ("number", True),
                    "sampler_num_bits": ("int", False),
                    "default_shots": ("int", False),
                },
            ),
            (
                ETEngineEmulatorConfig,
                {"phase_delay": ("number", True), "failure_rate": ("number", True)},
            ),
        ]
        for f in attrs.fields(cls)
        if f.name in fields
        for kind, zero_ok in [fields[f.name]]
    ),
    *(
        Arg(
            f"FaultConfig({name}=)",
            f"faults.{name}['*']",
            kind,
            True,
            lambda _, v, name=name: _faults(**{name: {"*": v}}),
        )
        for name, kind in [
            ("latency", "number"),
            ("error_rate", "number"),
            ("rate_limit_rps", "number"),
            ("drop_next", "int"),
            ("error_next", "int"),
        ]
    ),
    Arg(
        "FaultConfig(drop_stream_after_bytes=)",
        "faults.drop_stream_after_bytes",
        "int",
        True,
        lambda _, v: _faults(drop_stream_after_bytes=v),
    ),
    Arg(
        "FaultConfig(stall_seconds=)",
        "faults.stall_seconds",
        "number",
        True,
        lambda _, v: _faults(stall_seconds=v),
    ),
    Arg(
        "FaultConfig(error_status=)",
        "faults.error_status",
        "int",
        False,
        lambda _, v: _faults(error_status=v),
    ),
    Arg(
        "JSONStreamDecoder(max_value_bytes=)",
        "max_value_bytes",
        "int",
        False,
        lambda _, v: JSONStreamDecoder(max_value_bytes=v),
    ),
    Arg(
        "JSONStreamDecoder(max_depth=)",
        "max_depth",
        "int",
        False,
        lambda _, v: JSONStreamDecoder(max_depth=v),
    ),
    Arg(
        "FaultConfig(retry_after=)",
        "faults.retry_after",
        "int",
        True,
        lambda _, v: _faults(retry_after=v),
    ),
]

# (label, value, the error for an "int" argument, the error for a "number" one); None: valid.
BAD: list[tuple[str, object, type[Exception] | None, type[Exception] | None]] = [
    ("bool", True, TypeError, TypeError),
    ("str", "1", TypeError, TypeError),
    ("nan", math.nan, TypeError, ValueError),
    ("inf", math.inf, TypeError, ValueError),
    ("negative", -1, ValueError, ValueError),
    ("zero", 0, ValueError, ValueError),
    ("float", 1.5, TypeError, None),
]


def _bad_values(arg: Arg) -> list[tuple[str, object, type[Exception]]]:
    """The values ``arg`` must refuse, each with its label and the error it must raise."""
    cases = []
    for label, value, as_int, as_number in BAD:
        error = as_int if arg.kind == "int" else as_number
        if error is None or (label == "zero" and arg.zero_ok) or (label == "bool" and arg.bool_ok):
            continue  # a valid value there
        cases.append((label, value, error))
    return cases


async def _use(result: Any) -> None:
    """Run what a call returned far enough for it to check its arguments."""
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aenter__"):
        async with result:
            pass
    elif hasattr(result, "__aiter__"):
        async for _ in result:
            break


async def _call(arg: Arg, value: object) -> None:
    if arg.api is None:
        await _use(arg.call(None, value))
        return
    clients = {"wb": _wb, "q": _q, "ls": _ls, "et": _et}
    async with clients[arg.api]() as client:
        await _use(arg.call(client, value))


async def _one(item: int) -> int:
    return item


# One test per argument, its bad values as subtests: about 600 cases, each a client built
# and a call refused, without a test's set-up and event loop apiece.
@pytest.mark.parametrize("arg", ARGS, ids=lambda arg: arg.where)
async def test_every_numeric_argument_follows_the_rule(
    mocked: aioresponses, arg: Arg, subtests: pytest.Subtests
) -> None:
    for label, value, error in _bad_values(arg):
        with subtests.test(label):
            with pytest.raises(error) as info:
                await _call(arg, value)
            message = str(info.value)
            # The argument's name as the caller wrote it (perhaps after its owner: "stream.";
            # the emulator's (low, high) delays say which end).
            assert re.search(rf"(^|[ .]){re.escape(arg.name)}( \((low|high)\))? must be", message)
            assert repr(value) in message, message
    assert mocked.requests == {}  # refused before anything was sent


def test_the_table_covers_the_arguments() -> None:
    # A row lost (a bad edit of ARGS) would quietly test less.
    assert len(ARGS) >= 90
    assert {arg.api for arg in ARGS} >= {"wb", "q", "ls", "et"}


def test_ranges_probabilities_and_attrs_validators() -> None:
    assert count(100, "limit", maximum=100) == 100
    with pytest.raises(ValueError, match=r"^limit must be within 0\.\.100, got 101$"):
        count(101, "limit", maximum=100)
    assert number(0, "jitter", minimum=0, below=1) == 0
    with pytest.raises(ValueError, match=r"^jitter must be < 1, got 1$"):
        number(1, "jitter", below=1)
    assert probability(1, "rate") == 1
    for bad in (-0.1, 1.01, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^rate must be"):
            probability(bad, "rate")

    @frozen
    class Knob:
        turns: int = attrs.field(validator=validator(count, None, minimum=1))

    class Dial(Knob):
        pass

    # owner=None names the class the caller built, subclass included.
    with pytest.raises(ValueError, match=r"^Dial\.turns must be >= 1, got 0$"):
        Dial(0)
    with pytest.raises(TypeError, match=r"^Knob\.turns must be an int, got True$"):
        Knob(True)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1", "x", ""])
def test_the_cli_takes_the_seconds_the_library_takes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a"):
        positive_seconds(text)


def test_the_cli_whole_numbers() -> None:
    assert positive_seconds("0.5") == 0.5
    at_least_one_second = at_least_one("seconds")
    assert at_least_one_second("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"whole number of seconds >= 1, got '0'"):
        at_least_one_second("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"whole number of seconds, got .1\.5."):
        at_least_one_second("1.5")
    port = whole_number("a port number", maximum=65535)
    assert port("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match=r"within 0\.\.65535, got '65536'"):
        port("65536")
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument("--timeout", type=positive_seconds)
    with pytest.raises(argparse.ArgumentError, match="positive number of seconds"):
        parser.parse_args(["--timeout", "nan"])
