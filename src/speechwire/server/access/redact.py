"""What a credential looks like in text, and how to blank it (``server.logs`` applies it to
every log record).

Credential names are matched as the server reads them, not only as they are usually written: a
query parameter name is percent-decoded first (``?%74oken=`` is ``token=`` to Starlette), and an
``Authorization`` value is blanked whole, scheme and all (``Bearer X`` is one credential, not a
word followed by a secret).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

CREDENTIAL_NAMES = frozenset(
    {"token", "single_use_token", "xi-api-key", "xi_api_key", "authorization", "api_key", "api-key"}
)

# A query parameter: name=value, the name possibly percent-encoded.
_QUERY = re.compile(r"(?<![\w%-])((?:[\w-]|%[0-9A-Fa-f]{2})+)=([^&\s\"',;]*)")
# A header or a JSON member: xi-api-key: …, "xi_api_key": "…", authorization: Bearer …
_PAIR = re.compile(
    r"(?i)\b(token|single_use_token|xi[-_]api[-_]key|api[-_]key|authorization)"
    r"(\s*:\s*|\"\s*:\s*\"|'\s*:\s*'|'\s*,\s*b?')"
    r"((?:(?:bearer|basic|token)\s+)?[^\s\"',;&]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)([^\s\"',;&]+)")


def _query(match: re.Match[str]) -> str:
    if unquote_plus(match.group(1)).lower() in CREDENTIAL_NAMES and match.group(2):
        return f"{match.group(1)}=***"
    return match.group(0)


def redact(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """``text`` with every secret and credential-shaped value replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    text = _QUERY.sub(_query, text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}***", text)
