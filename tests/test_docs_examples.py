"""The documentation's code must keep working: run its examples, check its API names.

- Every ```python block of the guide pages in ``RUN_PAGES`` that starts an emulator itself
  (``async with Emulator(``), or that follows a ``<!-- runnable -->`` comment, is a complete
  program: it is executed here, against the real package and a real emulator.
- Every ```python block of every page must compile (top-level ``await`` allowed, as in
  notebooks), import only names that exist, and call client methods and constructors only
  with keyword arguments their signatures accept.
- The pytest example of ``testing.md`` (after ``<!-- pytest -->``) runs in a pytest of its
  own, and the API reference only names objects that exist.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import aiocompute
from aiocompute.emulator import (
    Emulator,
    EmulatorConfig,
    FaultConfig,
    WorkbenchEmulatorConfig,
)
from aiocompute.emulator import _server as emulator_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Pages whose self-contained examples are executed.
RUN_PAGES = (
    "quickstart.md",
    "workbench.md",
    "waiting.md",
    "streaming.md",
    "errors.md",
    "retries-timeouts.md",
    "sync.md",
    "platforms.md",
)
#: Each executed page must keep at least this many runnable examples (a guard against a
#: fence or marker typo silently turning every example into an unchecked one).
MIN_RUNNABLE = {
    "quickstart.md": 3,
    "workbench.md": 5,
    "waiting.md": 6,
    "streaming.md": 4,
    "errors.md": 2,
    "retries-timeouts.md": 1,
    "sync.md": 2,
    "platforms.md": 3,
}
#: Seconds one example may take (they wait on an emulator with sub-second timings).
EXAMPLE_BUDGET = 8.0

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_MARKER = re.compile(r"<!--\s*(runnable|pytest)\s*-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang == "python" and (
            self.marker == "runnable" or "async with Emulator(" in self.code
        )


def _pages() -> list[Path]:
    # The README's examples are held to the same checks as the guides'.
    docs = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)
    return [ROOT / "README.md", *docs]


def _blocks(path: Path) -> Iterator[Block]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n ").rsplit("\n", 1)[-1]
        found = _MARKER.search(before)
        yield Block(
            page=path.relative_to(DOCS).as_posix() if DOCS in path.parents else path.name,
            line=line,
            lang=match.group("lang"),
            code=textwrap.dedent(match.group("body")),
            marker=found.group(1) if found else None,
        )


def _python_blocks() -> list[Block]:
    return [b for page in _pages() for b in _blocks(page) if b.lang in ("python", "py")]


def _runnable() -> list[Block]:
    return [b for name in RUN_PAGES for b in _blocks(DOCS / name) if b.runnable]


def _compile(block: Block) -> Any:
    return compile(
        block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


# --------------------------------------------------------------------------- running examples


def test_each_guide_keeps_its_runnable_examples() -> None:
    counts = {name: 0 for name in RUN_PAGES}
    for block in _runnable():
        counts[block.page] += 1
    short = {p: n for p, n in counts.items() if n < MIN_RUNNABLE[p]}
    assert not short, f"too few runnable examples (found, by page): {short}"


def _quick_config() -> EmulatorConfig:
    """The emulator's defaults, a few times faster (the examples' outcomes do not change)."""
    return EmulatorConfig(
        workbench=WorkbenchEmulatorConfig(
            session_launch_delay=(0.01, 0.04),
            session_pending_delay=(0.01, 0.04),
            session_starting_delay=(0.01, 0.04),
            session_stop_delay=(0.01, 0.02),
            session_suspend_delay=(0.01, 0.03),
            session_resume_delay=(0.01, 0.04),
            job_pending_delay=(0.01, 0.03),
            job_chunk_interval=0.01,
        )
    )


@pytest.mark.parametrize("block", _runnable(), ids=lambda b: b.where)
def test_runnable_example(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    # Self-contained means: it starts its own emulator and talks to nothing else.
    if "Emulator(" in block.code:
        assert re.search(r"emu\.\w+_url", block.code), f"{block.where}: not pointed at the emulator"
    assert "asyncio.run(" in block.code or block.marker == "runnable", (
        f"{block.where}: an example that starts an emulator must be a complete program"
    )
    code = _compile(block)
    # Keep the suite quick: an example's Emulator() (no config) gets faster timings, unless
    # DOCS_EXAMPLES_DEFAULT_TIMINGS=1 asks to run them exactly as a reader would.
    if not os.environ.get("DOCS_EXAMPLES_DEFAULT_TIMINGS"):
        monkeypatch.setattr(emulator_server, "EmulatorConfig", _quick_config)
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    started = time.monotonic()
    exec(code, namespace)
    elapsed = time.monotonic() - started
    assert elapsed < EXAMPLE_BUDGET, f"{block.where} took {elapsed:.1f} s"
    # No example may leave an event loop behind for the next one.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


# --------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("block", _python_blocks(), ids=lambda b: b.where)
def test_python_block_compiles(block: Block) -> None:
    try:
        _compile(block)
    except SyntaxError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"{block.where}: {exc}")


def _imported(tree: ast.AST, where: str) -> dict[str, Any]:
    """Every ``from aiocompute... import name`` of a block, resolved (fails if missing)."""
    found: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiocompute"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name!r}"
                found[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aiocompute"):
                    importlib.import_module(alias.name)
    return found


#: The variable names the docs give clients, and the client each stands for.
_CLIENT_NAMES = {
    "wb": "WorkbenchClient",
    "q": "QiskitRuntimeClient",
    "ls": "LakeSailClient",
    "et": "ETEngineClient",
}


def _client_and_resources(variable: str, imported: dict[str, Any]) -> tuple[type, dict[str, type]]:
    """The classes ``wb`` and ``wb.<resource>`` stand for in a block: the async client, or
    its sync twin when the block imports the client from :mod:`aiocompute.sync`."""
    name = _CLIENT_NAMES[variable]
    client = imported.get(name) or getattr(aiocompute, name)
    twin_resources = getattr(client, "_resources", None)
    if twin_resources:  # a sync twin lists its resources
        return client, dict(twin_resources)
    module = sys.modules[client.__module__]
    resources = {}
    for attribute, annotation in inspect.get_annotations(client).items():
        resource = getattr(module, str(annotation), None)
        if inspect.isclass(resource):
            resources[attribute] = resource
    return client, resources


def _accepts(fn: Callable[..., Any], keywords: list[str], where: str, what: str) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in keywords if k not in params]
    assert not unknown, f"{where}: {what}() takes no keyword(s) {unknown}"


@functools.cache
def _idle_emulator() -> Emulator:
    return Emulator()


def _chain(node: ast.expr) -> list[str] | None:
    """``wb.jobs.launch`` -> ["wb", "jobs", "launch"]; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


@pytest.mark.parametrize("block", _python_blocks(), ids=lambda b: b.where)
def test_python_block_uses_real_names(block: Block) -> None:
    tree = ast.parse(block.code)
    imported = _imported(tree, block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain and chain[0] == "emu" and len(chain) >= 2:
                # Class attributes (properties, methods), or ones set by __init__.
                assert hasattr(Emulator, chain[1]) or chain[1] in vars(_idle_emulator()), (
                    f"{block.where}: Emulator has no {chain[1]!r}"
                )
                if chain[1] == "faults" and len(chain) >= 3:
                    fields = {f.name for f in attrs.fields(FaultConfig)}
                    assert chain[2] in fields or hasattr(FaultConfig, chain[2]), (
                        f"{block.where}: FaultConfig has no {chain[2]!r}"
                    )
        if not isinstance(node, ast.Call):
            continue
        keywords = [k.arg for k in node.keywords if k.arg is not None]
        if isinstance(node.func, ast.Name) and node.func.id in imported:
            target = imported[node.func.id]
            if callable(target):
                _accepts(target, keywords, block.where, node.func.id)
            continue
        chain = _chain(node.func)
        if not chain or chain[0] not in _CLIENT_NAMES:
            continue
        client, resources = _client_and_resources(chain[0], imported)
        shown = ".".join(chain)
        if len(chain) == 2:
            method = getattr(client, chain[1], None)
            assert method is not None, f"{block.where}: {client.__name__} has no {chain[1]!r}"
            _accepts(method, keywords, block.where, shown)
        elif len(chain) == 3:
            resource = resources.get(chain[1])
            assert resource is not None, f"{block.where}: {client.__name__} has no {chain[1]!r}"
            method = getattr(resource, chain[2], None)
            assert method is not None, f"{block.where}: {shown}: no such method"
            _accepts(method, keywords, block.where, shown)


# --------------------------------------------------------------------------- testing.md


@pytest.mark.slow
def test_testing_page_pytest_example_passes(tmp_path: Path) -> None:
    blocks = [b for b in _blocks(DOCS / "testing.md") if b.marker == "pytest"]
    assert blocks, "docs/testing.md lost its <!-- pytest --> example"
    for i, block in enumerate(blocks):
        (tmp_path / f"test_docs_example_{i}.py").write_text(block.code, encoding="utf-8")
    # Only the plugin the example needs: loading every installed one costs seconds.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "pytest_asyncio.plugin"]
    done = subprocess.run(
        [*command, "-p", "no:cacheprovider", "--rootdir", tmp_path],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed\b", done.stdout), done.stdout[-2000:]
    assert " failed" not in done.stdout


# --------------------------------------------------------------------------- cli.md


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every ``aiocompute ...`` command of the shell blocks of every page, as argv."""
    found = []
    for page in _pages():
        for block in _blocks(page):
            if block.lang not in ("bash", "console", "sh", "shell"):
                continue
            for line in block.code.splitlines():
                line = line.split("|", 1)[0].strip()  # what is piped into is not ours
                words = [w for w in shlex.split(line) if ">" not in w]  # nor redirections
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words.pop(0)  # VAR=value before the command
                if words[:1] == ["aiocompute"] and "--help" not in words:
                    found.append((f"{block.where}: {line}", words[1:]))
    return found


@pytest.mark.parametrize(("where", "argv"), _command_lines(), ids=lambda v: str(v)[:60])
def test_documented_command_line_parses(where: str, argv: list[str]) -> None:
    from aiocompute.cli._app import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of saying no
        pytest.fail(f"{where}: the command line is not accepted (exit {exc.code})")
    assert callable(getattr(args, "handler", None)), f"{where}: no command runs"


def test_cli_page_shows_commands() -> None:
    assert len(_command_lines()) >= 8


# --------------------------------------------------------------------------- reference & nav

_DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.MULTILINE)
_MEMBERS = re.compile(r"^:::\s+(\S+)\n(?:[ ]{4}.*\n)*?[ ]{6}members:\s*\[([^\]]*)\]", re.M)


def _resolve(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def test_reference_names_exist() -> None:
    seen = 0
    for page in (DOCS / "reference").glob("*.md"):
        for name in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            seen += 1
            try:
                _resolve(name)
            except (ImportError, AttributeError):
                pytest.fail(f"docs/reference/{page.name}: ::: {name} does not exist")
    assert seen > 40


def test_reference_member_lists_are_complete() -> None:
    """A reference entry that lists members explicitly must list every public method."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    listed = {
        name: [m.strip() for m in members.split(",")] for name, members in _MEMBERS.findall(text)
    }
    assert len(listed) >= 4, "explicit member lists went missing from the reference"
    for name, members in listed.items():
        cls = _resolve(name)
        public = {
            n
            for n, v in inspect.getmembers(cls)
            if not n.startswith("_") and (callable(v) or isinstance(v, property))
        }
        assert set(members) == public, f"{name}: listed {sorted(members)}, public {sorted(public)}"


#: Packages whose ``__all__`` classes and functions must all appear in the API reference.
_DOCUMENTED_PACKAGES = (
    "aiocompute",
    "aiocompute.workbench",
    "aiocompute.emulator",
    "aiocompute.sync",
    "aiocompute.qiskit",
    "aiocompute.lakesail",
    "aiocompute.etengine",
)


def test_reference_covers_the_public_names() -> None:
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        for name in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            documented.add(id(_resolve(name)))
    missing = []
    for package in _DOCUMENTED_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if (inspect.isclass(value) or inspect.isfunction(value)) and id(
                value
            ) not in documented:
                missing.append(f"{package}.{name}")
    assert not missing, f"public names without a reference entry: {missing}"


def test_nav_pages_exist() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    pages = re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.MULTILINE)
    assert len(pages) > 15
    # benchmarks.md is written by the benchmarks' owner; the strict docs build checks it.
    missing = [p for p in pages if p != "benchmarks.md" and not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml nav names missing pages: {missing}"
