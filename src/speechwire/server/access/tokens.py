"""Single-use tokens: what a browser puts in a WebSocket URL instead of an API key.

Why single-use and short-lived: a URL ends up in browser history, proxies and logs, so what it
carries must be worthless once used and soon worthless unused (15 minutes, as upstream).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

TokenType = Literal["tts_websocket", "realtime_scribe"]
TOKEN_TYPES: tuple[TokenType, ...] = ("tts_websocket", "realtime_scribe")
TOKEN_TTL_S = 15 * 60.0


class TokenStore(Protocol):
    """Where minted tokens live until used or expired (in memory here; ``shared_store`` for replicas)."""

    async def mint(self, kind: TokenType, owner: str = "anonymous") -> str: ...

    async def consume(self, token: str, kind: TokenType) -> str | None:
        """The owner (who minted it) once for a live token of this kind; None ever after, or for
        anything else."""
        ...


@dataclass
class MemoryTokenStore:
    """Tokens of one process. Expired ones are swept on each mint, so memory stays bounded by the
    mint rate times the lifetime."""

    ttl_s: float = TOKEN_TTL_S
    clock: Callable[[], float] = time.monotonic
    _tokens: dict[str, tuple[TokenType, float, str]] = field(default_factory=dict)

    async def mint(self, kind: TokenType, owner: str = "anonymous") -> str:
        now = self.clock()
        for token, (_, expires, _) in list(self._tokens.items()):
            if expires <= now:
                del self._tokens[token]
        token = "sw_" + secrets.token_urlsafe(24)
        self._tokens[token] = (kind, now + self.ttl_s, owner)
        return token

    async def consume(self, token: str, kind: TokenType) -> str | None:
        entry = self._tokens.get(token)
        if entry is None or entry[0] != kind:
            return None
        del self._tokens[token]
        return entry[2] if entry[1] > self.clock() else None

    def __len__(self) -> int:
        return len(self._tokens)
