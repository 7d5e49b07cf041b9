"""Log output: ``text`` (human-readable) or ``json`` (one object per line), one format for
the command line and the worker (``ENGAGEMENT_LOG_FORMAT``).

A JSON line holds ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``message``, ``process``, ``exception`` (the formatted traceback, when there is one), and
whatever ``extra`` fields the call passed (values JSON cannot hold are written as text).

>>> import logging
>>> record = logging.LogRecord("stream_app.worker", logging.INFO, __file__, 1, "fired %d", (3,),
...                            None)
>>> record.created, record.process = 1700000000.25, 42
>>> line = JsonFormatter().format(record)
>>> line[:60]
'{"time":"2023-11-14T22:13:20.250Z","level":"info","logger":"'
>>> doc = orjson.loads(line)
>>> doc["logger"], doc["message"], doc["process"]
('stream_app.worker', 'fired 3', 42)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

from stream_app.contracts import rfc3339
from stream_app.settings import PREFIX, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": rfc3339(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc and not key.startswith("_"):
                doc[key] = value
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``ENGAGEMENT_LOG_FORMAT`` alone, checked as the settings check it (so that logging
    can be set up before the command reads, and reports, the rest of its settings)."""
    env = os.environ if environ is None else environ
    name = PREFIX + "LOG_FORMAT"
    return Settings.from_env({name: env[name]} if name in env else {}).log_format


def configure(fmt: str, level: int | str = logging.WARNING) -> None:
    """Set up the root logger of a command-line process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def worker_logging_config(fmt: str, level: str) -> dict[str, Any] | None:
    """The worker's ``logging.config`` dictionary for ``fmt`` at ``level`` (None: faust's
    own text format, which the worker has always written)."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }


def error_line(command: str, message: str, fmt: str) -> str:
    """The one line a user error prints on stderr, in the log format.

    >>> error_line("score", "Redis unreachable", "text")
    'engagement-scorer score: error: Redis unreachable'
    >>> sorted(orjson.loads(error_line("score", "Redis unreachable", "json")))
    ['command', 'level', 'logger', 'message', 'process', 'time']
    """
    if fmt == "json":
        doc = {
            "time": rfc3339(time.time() * 1000), "level": "error", "logger": "stream_app.cli",
            "message": message, "process": os.getpid(), "command": command,
        }  # fmt: skip
        return orjson.dumps(doc).decode()
    return f"engagement-scorer {command}: error: {message}"
