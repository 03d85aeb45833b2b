"""Logging: the ``aiocompute`` logger tree and ``AIOCOMPUTE_LOG``.

Every logger of the package is a child of ``aiocompute``, named by concern:
``aiocompute.transport`` (one line per HTTP try: method, redacted URL, status, time),
``aiocompute.retries``, ``aiocompute.stream``, ``aiocompute.polling``, ``aiocompute.auth``.
The library adds no handler unless ``AIOCOMPUTE_LOG`` is set (``debug``, ``info``,
``warning`` or ``error``): then :func:`configure_logging`, run by ``import aiocompute``,
puts one stderr handler on the ``aiocompute`` logger (never on the root logger).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

__all__ = ["LOG_ENV", "configure_logging"]

# --------------------------------------------------------------------------- logging

#: The environment variable that turns the package's logging on without code.
LOG_ENV = "AIOCOMPUTE_LOG"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# The name of the handler AIOCOMPUTE_LOG adds, so that a second import finds it.
_HANDLER_NAME = "aiocompute.AIOCOMPUTE_LOG"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Apply ``AIOCOMPUTE_LOG``: one stderr handler on the ``aiocompute`` logger, at that level.

    Does nothing when the variable is unset or empty; warns (once per call, no exception)
    when it holds something else than ``debug``, ``info``, ``warning`` or ``error`` (any
    case). Idempotent: a handler added before (by an earlier import) is kept and returned,
    not doubled. The root logger is never touched. Returns the handler, or None.
    """
    value = (os.environ if environ is None else environ).get(LOG_ENV, "").strip()
    if not value:
        return None
    level = _LEVELS.get(value.lower())
    if level is None:
        warnings.warn(
            f"{LOG_ENV}={value[:40]!r} is not a log level; use one of "
            f"{', '.join(_LEVELS)} (any case). Logging stays off.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    logger = logging.getLogger("aiocompute")
    logger.setLevel(level)
    for existing in logger.handlers:
        if existing.name == _HANDLER_NAME:
            existing.setLevel(level)
            return existing
    handler = logging.StreamHandler()  # sys.stderr
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    return handler
