"""Logging: ``AIOCOMPUTE_LOG`` in a fresh interpreter, and the ``aiocompute`` logger tree."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from aiocompute._core import observability

SRC = Path(__file__).resolve().parent.parent / "src"

# A distinctive credential: if it ever shows up on stderr, it leaked.
ET_KEY = "etkey-OTEL-8e1b44c0f2"


# --------------------------------------------------------------------------- subprocesses


def run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    environ = {k: v for k, v in os.environ.items() if k != observability.LOG_ENV}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60
    )


# One ET Engine read against the emulator; prints what the root and aiocompute loggers hold.
REQUEST = f"""
import asyncio, json, logging
from aiocompute import ETEngineClient
from aiocompute.emulator import Emulator, EmulatorConfig, ETEngineEmulatorConfig

async def main():
    config = EmulatorConfig(etengine=ETEngineEmulatorConfig(api_keys={{{ET_KEY!r}: "u"}}))
    async with Emulator(config=config) as emu:
        async with ETEngineClient(api_key={ET_KEY!r}, url=emu.etengine_url) as et:
            await et.batches.list()

asyncio.run(main())
logger = logging.getLogger("aiocompute")
print(json.dumps({{
    "root_handlers": len(logging.getLogger().handlers),
    "handlers": len(logger.handlers),
    "level": logger.level,
}}))
"""


def test_aiocompute_log_debug_logs_requests_to_stderr() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "Debug"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    requests = [line for line in lines if "aiocompute.transport" in line and "-> 200" in line]
    assert requests, done.stderr
    assert " DEBUG " in requests[0]
    assert "GET " in requests[0]
    assert ET_KEY not in done.stderr
    assert "Authorization" not in done.stderr
    state = json.loads(done.stdout)
    assert state == {"root_handlers": 0, "handlers": 1, "level": logging.DEBUG}


def test_without_aiocompute_log_nothing_is_logged() -> None:
    done = run(REQUEST)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"root_handlers": 0, "handlers": 0, "level": 0}


def test_aiocompute_log_info_hides_debug_lines() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "INFO"})
    assert done.returncode == 0, done.stderr
    assert "aiocompute.transport" not in done.stderr
    assert json.loads(done.stdout)["level"] == logging.INFO


def test_a_bad_aiocompute_log_warns_once_and_logs_nothing() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "loud"})
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "AIOCOMPUTE_LOG" in warnings[0]
    assert all(level in warnings[0] for level in ("debug", "info", "warning", "error"))
    assert "aiocompute.transport" not in done.stderr
    assert json.loads(done.stdout)["handlers"] == 0


def test_aiocompute_log_handler_is_added_once() -> None:
    code = (
        "import importlib, logging, sys, aiocompute\n"
        "importlib.reload(aiocompute)\n"
        "for name in [m for m in sys.modules if m.startswith('aiocompute')]:\n"
        "    del sys.modules[name]\n"
        "import aiocompute\n"
        "print(len(logging.getLogger('aiocompute').handlers), len(logging.getLogger().handlers))\n"
    )
    done = run(code, {"AIOCOMPUTE_LOG": "debug"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]


def test_every_logger_is_in_the_aiocompute_tree() -> None:
    # Every getLogger under src names a child of "aiocompute", by concern (the parent
    # itself only where AIOCOMPUTE_LOG puts its handler).
    found = {
        match
        for path in SRC.rglob("*.py")
        for match in re.findall(r"getLogger\(([^)]*)\)", path.read_text(encoding="utf-8"))
    }
    assert found == {
        '"aiocompute"',
        '"aiocompute.transport"',
        '"aiocompute.retries"',
        '"aiocompute.stream"',
        '"aiocompute.polling"',
        '"aiocompute.auth"',
    }
