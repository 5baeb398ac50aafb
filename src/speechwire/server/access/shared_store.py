"""Tokens and rate limits shared by every replica, in Redis (``SPEECHWIRE_REDIS_URL``).

Why Redis and Lua: a token must be accepted once across all replicas and a key's budget must be
one budget, so each check-and-update is a single atomic script on the server that holds the
state, not a read followed by a write that another replica could interleave.

Why leases for open sessions, not a counter: a replica that is killed never releases, so a
counter would keep its sessions against their key for hours, and a key whose sessions failed
over would count them twice. Each open session is a lease its replica renews every third of
``lease_s``; a dead replica's leases lapse within ``lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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

# KEYS: bucket hash, open-session leases (a sorted set: member = replica:session, score = expiry).
# ARGV: per_minute, burst, max_open, bucket idle ttl (s), member, lease ttl (s).
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local per_minute, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_open, ttl, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or t
tokens = math.min(burst, tokens + (t - updated) * per_minute / 60)
if redis.call('ZCARD', KEYS[2]) >= max_open then return 'open' end
local taken = tokens >= 1
if taken then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'updated', t)
redis.call('EXPIRE', KEYS[1], ttl)
if not taken then return 'rate' end
redis.call('ZADD', KEYS[2], t + lease, ARGV[5])
redis.call('EXPIRE', KEYS[2], math.ceil(lease) + 1)
return 'ok'
"""

# KEYS: a caller's lease set. ARGV: lease ttl (s), then this replica's members in it.
_RENEW = """
local now = redis.call('TIME')
local expiry = tonumber(now[1]) + tonumber(now[2]) / 1e6 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return #ARGV - 1
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
        lease_s: float = 15.0,
        bucket_ttl_s: int = 3600,
    ) -> None:
        import redis.asyncio as redis

        self.client: Any = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.token_ttl_s = token_ttl_s
        self.per_minute = per_minute
        self.burst = burst
        self.max_open = max_open
        self.bucket_ttl_s = bucket_ttl_s
        self.lease_s = lease_s
        self._consume = self.client.register_script(_CONSUME)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._replica = secrets.token_hex(6)
        self._ids = itertools.count()
        self._held: dict[str, list[str]] = {}
        """This replica's open leases by caller: what it renews, and what ``release`` gives back."""
        self._renewer: asyncio.Task[None] | None = None

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
        member = f"{self._replica}:{next(self._ids)}"
        result = await self._acquire(
            keys=[f"{self.prefix}rate:{caller}", f"{self.prefix}open:{caller}"],
            args=[self.per_minute, self.burst, self.max_open, self.bucket_ttl_s, member, self.lease_s],
        )
        if result == "ok":
            self._held.setdefault(caller, []).append(member)
            if self._renewer is None:
                self._renewer = asyncio.get_running_loop().create_task(self._keep_leases())
        refusals = {"open": OPEN_REFUSED.format(self.max_open), "rate": RATE_REFUSED.format(self.per_minute)}
        return refusals.get(result)

    async def release(self, caller: str) -> None:
        held = self._held.get(caller)
        if not held:
            return
        member = held.pop()
        if not held:
            del self._held[caller]
        await self.client.zrem(f"{self.prefix}open:{caller}", member)

    async def _keep_leases(self) -> None:
        """Renew this replica's leases while it lives; a Redis hiccup only skips one round."""
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(self.lease_s / 3)
            for caller, members in list(self._held.items()):
                with contextlib.suppress(RedisError, OSError):
                    await self._renew(keys=[f"{self.prefix}open:{caller}"], args=[self.lease_s, *members])

    async def ping(self) -> None:
        """Fail at start-up, not at the first session, when Redis is unreachable."""
        await self.client.ping()

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        await self.client.aclose()
