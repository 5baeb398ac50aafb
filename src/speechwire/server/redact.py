"""Keys and tokens never reach a log line.

Why a record factory and not a filter: filters sit on particular loggers or handlers and miss
records of libraries that log elsewhere (uvicorn's access log prints every URL, tokens included).
The factory runs for every record any logger creates, before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_PATTERNS = (
    # query parameters and header-like pairs: token=…, single_use_token=…, xi-api-key: …
    re.compile(
        r"(?i)\b(token|single_use_token|xi[-_]api[-_]key|authorization)(=|:\s*|\"\s*:\s*\")([^&\s\"',;]+)"
    ),
    re.compile(r"(?i)\b(bearer\s+)([^\s\"',;]+)"),
)
_secrets: set[str] = set()
_installed = False


def redact(text: str) -> str:
    for secret in _secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _PATTERNS[1].sub(lambda m: f"{m.group(1)}***", text)


def install(secrets: list[str]) -> None:
    """Redact ``secrets`` (and anything that looks like a credential) from every log record."""
    global _installed
    _secrets.update(s for s in secrets if len(s) >= 4)
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
