"""A setting of the wrong type is a TypeError naming the argument, never the value.

A token passed as ``int`` used to fail with ``AttributeError: 'int' object has no attribute
'strip'``, and one passed as ``bytes`` was sent as ``Bearer b'...'``. The value is never in
the message: it may be a secret.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiocompute import ETEngineClient, LakeSailClient, QiskitRuntimeClient, WorkbenchClient
from aiocompute._core.config import check_str, resolve_setting

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
WB = "http://127.0.0.1:1"
SECRET_BYTES = b"sekrit-bytes-token"

# (case, client class, its arguments, the argument of the wrong type)
CASES: list[tuple[str, type, dict[str, Any], str]] = [
    ("wb base_url", WorkbenchClient, {"base_url": 123, "token": "t"}, "base_url"),
    ("wb token", WorkbenchClient, {"base_url": WB, "token": 123}, "token"),
    ("wb token bytes", WorkbenchClient, {"base_url": WB, "token": SECRET_BYTES}, "token"),
    ("wb rpc_cookie", WorkbenchClient, {"base_url": WB, "rpc_cookie": 987654}, "rpc_cookie"),
    ("wb act_as", WorkbenchClient, {"base_url": WB, "token": "t", "act_as": 4321}, "act_as"),
    ("qiskit token", QiskitRuntimeClient, {"token": 1, "instance": CRN}, "token"),
    ("qiskit token bytes", QiskitRuntimeClient, {"token": SECRET_BYTES, "instance": CRN}, "token"),
    ("qiskit instance", QiskitRuntimeClient, {"token": "k", "instance": 42}, "instance"),
    (
        "qiskit base_url",
        QiskitRuntimeClient,
        {"token": "k", "instance": CRN, "base_url": 5},
        "base_url",
    ),
    ("qiskit region", QiskitRuntimeClient, {"token": "k", "instance": CRN, "region": 7}, "region"),
    (
        "qiskit iam_url",
        QiskitRuntimeClient,
        {"token": "k", "instance": CRN, "iam_url": 8},
        "iam_url",
    ),
    (
        "qiskit api_version",
        QiskitRuntimeClient,
        {"token": "k", "instance": CRN, "api_version": 20250501},
        "api_version",
    ),
    ("lakesail token bytes", LakeSailClient, {"token": SECRET_BYTES}, "token"),
    ("lakesail token", LakeSailClient, {"token": 31337}, "token"),
    ("lakesail base_url", LakeSailClient, {"token": "t", "base_url": 9}, "base_url"),
    ("et api_key", ETEngineClient, {"api_key": 1.5}, "api_key"),
    ("et api_key bytes", ETEngineClient, {"api_key": SECRET_BYTES}, "api_key"),
    ("et base_url", ETEngineClient, {"api_key": "k", "base_url": 5}, "base_url"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "argument"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_non_string_setting_is_a_type_error_naming_it(
    cls: type, kwargs: dict[str, Any], argument: str
) -> None:
    value = kwargs[argument if argument in kwargs else "base_url"]
    with pytest.raises(TypeError) as info:
        cls(**kwargs)
    message = str(info.value)
    assert message == f"{argument} must be a str, got {type(value).__name__}"
    assert repr(value) not in message
    if isinstance(value, bytes):
        assert value.decode() not in message


def test_resolve_setting_checks_the_type_first() -> None:
    with pytest.raises(TypeError, match=r"^token must be a str, got int$"):
        resolve_setting(3, ["X"], what="a token", argument="token", environ={})  # type: ignore[arg-type]
    assert resolve_setting(None, ["X"], what="t", argument="token", environ={"X": " v "}) == "v"
    assert check_str("v", "token") == "v"
