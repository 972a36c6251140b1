"""Logging with transaction ids.

Public: :func:`setup`, :func:`new_trans_id`, :data:`trans_id`.

Every request gets a transaction id (Swift's shape: ``tx`` + 21 hex digits + ``-`` + the hex
time), returned to the client in ``X-Trans-Id`` and attached to every log line written while the
request is served, through a context variable, so one grep finds everything about one request.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import uuid

trans_id: contextvars.ContextVar[str] = contextvars.ContextVar("trans_id", default="-")


def new_trans_id(suffix: str = "") -> str:
    """A fresh transaction id, Swift-shaped, with an optional client-supplied suffix."""
    return f"tx{uuid.uuid4().hex[:21]}-{int(time.time()):010x}{suffix}"


class _TransIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trans_id = trans_id.get()
        return True


def setup(name: str, level: str = "INFO", *, stream=None) -> logging.Logger:
    """Configure the root logger once for daemon ``name`` and return its logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_TransIdFilter())
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {name}[%(process)d] %(levelname)s %(trans_id)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return logging.getLogger(name)
