"""Tokens and rate limits shared by every replica, in Redis (``SPEECHWIRE_REDIS_URL``).

Why Redis and Lua: a token must be accepted once across all replicas and a key's budget must be
one budget, so each check-and-update is a single atomic script on the server that holds the
state, not a read followed by a write that another replica could interleave.
"""

from __future__ import annotations

import secrets
from typing import Any

from speechwire.server.access.limits import OPEN_REFUSED, RATE_REFUSED
from speechwire.server.access.tokens import TOKEN_TTL_S, TokenType

_CONSUME = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local sep = string.find(value, '|', 1, true)
if string.sub(value, 1, sep - 1) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return string.sub(value, sep + 1)
"""

# KEYS: bucket hash, open-sessions counter. ARGV: per_minute, burst, max_open, idle ttl (s).
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local per_minute, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_open, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or t
tokens = math.min(burst, tokens + (t - updated) * per_minute / 60)
local open = tonumber(redis.call('GET', KEYS[2]) or '0')
if open >= max_open then return 'open' end
local taken = tokens >= 1
if taken then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'updated', t)
redis.call('EXPIRE', KEYS[1], ttl)
if not taken then return 'rate' end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ttl)
return 'ok'
"""

_RELEASE = """
local open = tonumber(redis.call('GET', KEYS[1]) or '0')
if open > 0 then redis.call('DECR', KEYS[1]) end
return open
"""


class RedisStores:
    """The token store and the rate limiter of all replicas, on one Redis connection pool."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "speechwire:",
        token_ttl_s: float = TOKEN_TTL_S,
        per_minute: float = 120.0,
        burst: int = 20,
        max_open: int = 16,
        session_ttl_s: int = 6 * 3600,
    ) -> None:
        import redis.asyncio as redis

        self.client: Any = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.token_ttl_s = token_ttl_s
        self.per_minute = per_minute
        self.burst = burst
        self.max_open = max_open
        self.session_ttl_s = session_ttl_s  # an open-session count outlives a crashed replica this long
        self._consume = self.client.register_script(_CONSUME)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._release = self.client.register_script(_RELEASE)

    # TokenStore
    async def mint(self, kind: TokenType, owner: str = "anonymous") -> str:
        token = "sw_" + secrets.token_urlsafe(24)
        await self.client.set(
            f"{self.prefix}token:{token}", f"{kind}|{owner}", px=int(self.token_ttl_s * 1000)
        )
        return token

    async def consume(self, token: str, kind: TokenType) -> str | None:
        owner = await self._consume(keys=[f"{self.prefix}token:{token}"], args=[kind])
        return str(owner) if owner else None

    # RateLimiter
    async def acquire(self, caller: str) -> str | None:
        result = await self._acquire(
            keys=[f"{self.prefix}rate:{caller}", f"{self.prefix}open:{caller}"],
            args=[self.per_minute, self.burst, self.max_open, self.session_ttl_s],
        )
        refusals = {"open": OPEN_REFUSED.format(self.max_open), "rate": RATE_REFUSED.format(self.per_minute)}
        return refusals.get(result)

    async def release(self, caller: str) -> None:
        await self._release(keys=[f"{self.prefix}open:{caller}"])

    async def ping(self) -> None:
        """Fail at start-up, not at the first session, when Redis is unreachable."""
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
