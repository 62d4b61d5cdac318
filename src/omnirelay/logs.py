"""Process logging: text or JSON lines, each carrying the request id of its call.

With ``log_calls``, each call also logs one line when it is settled (logger
``omnirelay.calls``, message ``call``): request id, key id, endpoint, model, channel,
status, latency and time to first byte, tokens, cost in nano-dollars, stream, attempts.
In JSON they are fields of the line; in text, ``name=value`` pairs after the message.

Prompt text and secrets are never passed to the logger by the gateway's code (a call's
line has no error text either: an upstream's words may quote the request).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time

import orjson

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


CALL_FIELDS = "call"
"""The ``extra`` attribute under which a call's line carries its fields."""


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        fields = getattr(record, CALL_FIELDS, None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, CALL_FIELDS, None)
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        return line


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a formatted line per call; the request log table has it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
