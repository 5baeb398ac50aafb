"""Log lines an operator can use: each carries its session id, none carries a secret.

Why a record factory: it runs for every record of every logger (uvicorn's access log, websockets'
frame dumps, ours) before any handler, so the session id is always there to format and a key or
token can never reach a handler. Data frames in websockets' debug dumps are logged as their kind
and size only: the library elides a long frame to its head and tail, which can cut a key in the
middle, past the name that redaction recognises, and a key may also straddle two fragments.
``configure`` sets the format for ``speechwire serve``: text, or one JSON object per line for
log pipelines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from typing import Any

from websockets.frames import DATA_OPCODES, Frame

from speechwire.server.access.redact import redact

SESSION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("speechwire_session", default="-")
"""The current session's id, set when a session starts; asyncio tasks inherit it."""

_secrets: set[str] = set()


def _summary(arg: object) -> object:
    """What a data frame's log line shows: its kind and size, never its payload."""
    if not isinstance(arg, Frame) or arg.opcode not in DATA_OPCODES:
        return arg
    size, more = len(arg.data), "" if arg.fin else ", continued"
    return f"{arg.opcode.name} [{size} byte{'' if size == 1 else 's'}{more}]"


_installed = False


def install(secrets: list[str]) -> None:
    """Redact ``secrets`` (and anything shaped like a credential) and tag every record with its
    session id."""
    global _installed
    _secrets.update(s for s in secrets if len(s) >= 4)
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.session_id = SESSION_ID.get()
        if isinstance(record.args, tuple):
            record.args = tuple(_summary(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        cleaned = redact(message, _secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), _secrets)
        return record

    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "session": getattr(record, "session_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)


PROBES = frozenset({"/healthz", "/readyz"})
_REQUEST_LINE = re.compile(r'"[A-Z]+ (\S+) HTTP/')


class _NoProbes(logging.Filter):
    """Leave probe requests out of the access log: a balancer checks ``/readyz`` twice a second on
    every replica, which would drown every other line (refused sessions and the drain log themselves)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The record factory has already rendered the line (it redacts the text), so read it.
        request = _REQUEST_LINE.search(record.getMessage())
        return request is None or request.group(1).split("?")[0] not in PROBES


def configure(level: str = "info", fmt: str = "text") -> None:
    """Root logging for ``speechwire serve``."""
    logging.getLogger("uvicorn.access").addFilter(_NoProbes())
    handler = logging.StreamHandler()
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(session_id)s] %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
