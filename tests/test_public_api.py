"""The curated public surface: what DESIGN.md promises is there, documented, and nothing else."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import aiocompute
from aiocompute import etengine, lakesail, qiskit, workbench

# DESIGN.md's contract: names users, docs and tests rely on.
CONTRACT = {
    "WorkbenchClient": ["version", "users", "compute_envs"],
    "WorkbenchClient.sessions": [
        "launch", "list", "get", "history", "resume", "stop",
        "wait", "wait_all", "as_completed", "watch",
    ],
    "WorkbenchClient.jobs": ["launch", "output", "wait", "stop"],
    "WorkbenchClient.audited_jobs": ["launch", "output", "details", "stop", "wait"],
    "QiskitRuntimeClient.sessions": [
        "create", "get", "update", "close", "wait", "wait_all", "as_completed", "watch",
    ],
    "QiskitRuntimeClient.jobs": [
        "run", "get", "list", "cancel", "delete", "results", "logs", "metrics",
        "wait", "wait_all", "as_completed", "watch",
    ],
    "LakeSailClient.sessions": [
        "list", "create", "get", "close", "token", "relaunch",
        "wait", "wait_all", "as_completed", "watch",
    ],
    "LakeSailClient.workload_configs": ["list", "create", "get"],
    "ETEngineClient.batches": ["list", "status", "delete", "delete_all", "wait"],
    "ETEngineClient.jobs": ["list", "get"],
}  # fmt: skip

ERROR_TREE = {
    "TransportError": "AioComputeError",
    "APIError": "AioComputeError",
    "AuthenticationError": "APIError",
    "NotFoundError": "APIError",
    "RateLimitError": "APIError",
    "ConflictError": "APIError",
    "UsageLimitExceeded": "ConflictError",
    "ServerError": "APIError",
    "ProtocolError": "AioComputeError",
    "StreamDecodeError": "ProtocolError",
    "WaitError": "AioComputeError",
    "WaitTimeout": "WaitError",
    "UnreachableState": "WaitError",
}


def test_all_is_sorted_unique_and_importable() -> None:
    names = aiocompute.__all__
    assert len(names) == len(set(names))
    assert names == sorted(names)
    for name in names:
        assert hasattr(aiocompute, name), name


def test_no_private_or_module_leaks_in_all() -> None:
    for name in aiocompute.__all__:
        if name == "__version__":
            continue
        assert not name.startswith("_"), name
        assert not inspect.ismodule(getattr(aiocompute, name)), name


@pytest.mark.parametrize("name", [n for n in aiocompute.__all__ if n != "__version__"])
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(aiocompute, name)
    assert inspect.getdoc(obj), f"aiocompute.{name} has no docstring"


@pytest.mark.parametrize(("path", "methods"), CONTRACT.items())
def test_design_contract_methods_exist(path: str, methods: list[str]) -> None:
    cls_name, *attrs = path.split(".")
    cls: type = getattr(aiocompute, cls_name)
    for attr in attrs:
        cls = inspect.get_annotations(cls, eval_str=True)[attr]
    for method in methods:
        fn = getattr(cls, method, None)
        assert fn is not None, f"{path}.{method} is missing"
        assert inspect.getdoc(fn), f"{path}.{method} has no docstring"


@pytest.mark.parametrize(("child", "parent"), ERROR_TREE.items())
def test_error_tree(child: str, parent: str) -> None:
    assert getattr(aiocompute, child).__mro__[1] is getattr(aiocompute, parent)


@pytest.mark.parametrize("package", [workbench, qiskit, lakesail, etengine])
def test_api_packages_export_documented_names(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert inspect.getdoc(getattr(package, name)), name


def test_version_is_a_string() -> None:
    assert isinstance(aiocompute.__version__, str)
    assert aiocompute.__version__.count(".") == 2


def test_the_api_packages_load_on_first_use() -> None:
    # A program that talks to one platform does not import the other three.
    code = (
        "import sys, aiocompute\n"
        "apis = ('etengine', 'lakesail', 'qiskit', 'workbench')\n"
        "loaded = lambda: [a for a in apis if 'aiocompute.' + a in sys.modules]\n"
        "print(loaded())\n"
        "from aiocompute import ETEngineClient\n"
        "print(loaded(), ETEngineClient.__module__)\n"
        "print(aiocompute.workbench.WorkbenchClient is aiocompute.WorkbenchClient)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["[]", "['etengine'] aiocompute.etengine.client", "True"]


def test_every_public_name_is_reachable_and_listed() -> None:
    for name in aiocompute.__all__:
        assert getattr(aiocompute, name) is not None
        assert name in dir(aiocompute)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        aiocompute.Nope  # noqa: B018
