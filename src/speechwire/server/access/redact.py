"""What a credential looks like in text, and how to blank it (``server.logs`` applies it to
every log record)."""

from __future__ import annotations

import re

_PATTERNS = (
    # query parameters and header-like pairs: token=…, single_use_token=…, xi-api-key: …
    re.compile(
        r"(?i)\b(token|single_use_token|xi[-_]api[-_]key|authorization)(=|:\s*|\"\s*:\s*\")([^&\s\"',;]+)"
    ),
    re.compile(r"(?i)\b(bearer\s+)([^\s\"',;]+)"),
)


def redact(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """``text`` with every secret and credential-shaped value replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _PATTERNS[1].sub(lambda m: f"{m.group(1)}***", text)
