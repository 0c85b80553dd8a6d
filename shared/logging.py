"""structlog JSON logs carrying item and correlation ids.

Never pass message bodies, extracted text or CPR numbers to a logger: log ids, counts and
kinds. `redact` is a last line of defence that masks anything shaped like a CPR number.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_CPR = re.compile(r"\b(\d{6})-?\d{4}\b")


def redact(_logger: Any, _name: str,
           event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and _CPR.search(value):
            event_dict[key] = _CPR.sub(r"\1-XXXX", value)
    return event_dict


class _StderrLogger:
    """Writes to whatever `sys.stderr` is at the time of the call, not at configuration:
    a captured or replaced stderr (test runners, CLI wrappers) may be closed later."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()
                                                            .get(level.upper(), logging.INFO)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
