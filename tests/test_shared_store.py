"""Two speechwire processes behind one Redis: tokens and per-key limits are shared.

Starts Debian's ``redis-server`` on a free loopback port (``make test`` installs it) and two real
``speechwire serve`` processes pointed at it, as replicas behind a load balancer would be.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from speechwire.server.access.shared_store import RedisStores
from speechwire.testing.serverprocess import ServerProcess, free_port

KEY = "sw_shared_key_5e6f7a8b9c0d1e2f3a4b"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="make test installs redis-server"
)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def replicas(redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {
        "SPEECHWIRE_API_KEYS": json.dumps([KEY]),
        "SPEECHWIRE_REDIS_URL": redis_url,
        "SPEECHWIRE_RATE_BURST": "4",
        "SPEECHWIRE_RATE_SESSIONS_PER_MINUTE": "6",
    }
    a, b = ServerProcess(free_port(), **env), ServerProcess(free_port(), **env)
    a.start()
    b.start()
    yield a, b
    a.kill()
    b.kill()


async def _open(port: int, query: str, headers: dict[str, str] | None = None) -> str:
    url = f"ws://127.0.0.1:{port}/v1/speech-to-text/realtime?{query}"
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        return str(json.loads(await asyncio.wait_for(ws.recv(), 10))["message_type"])


async def test_a_token_minted_on_one_replica_works_once_on_the_other(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    async with httpx.AsyncClient() as http:
        minted = await http.post(
            f"http://127.0.0.1:{a.port}/v1/single-use-token/realtime_scribe", headers={"xi-api-key": KEY}
        )
    token = minted.json()["token"]
    assert await _open(b.port, f"token={token}") == "session_started"
    assert await _open(a.port, f"token={token}") == "auth_error"
    assert await _open(b.port, f"token={token}") == "auth_error"


async def test_two_replicas_race_for_one_token_and_only_one_wins(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    async with httpx.AsyncClient() as http:
        minted = await http.post(
            f"http://127.0.0.1:{b.port}/v1/single-use-token/realtime_scribe", headers={"xi-api-key": KEY}
        )
    token = minted.json()["token"]
    results = await asyncio.gather(*(_open(p, f"token={token}") for p in (a.port, b.port, a.port, b.port)))
    assert sorted(results) == ["auth_error", "auth_error", "auth_error", "session_started"]


async def test_a_keys_budget_is_one_budget_across_replicas(redis_url: str) -> None:
    stores = RedisStores(redis_url, prefix="speechwire-test:", per_minute=6, burst=3, max_open=2)
    try:
        assert await stores.acquire("key:x") is None
        assert await stores.acquire("key:x") is None
        assert "open sessions" in str(await stores.acquire("key:x"))  # two open already
        await stores.release("key:x")
        assert await stores.acquire("key:x") is None  # a slot came back; third of the burst
        await stores.release("key:x")
        assert "a minute" in str(await stores.acquire("key:x"))  # burst spent
        assert await stores.acquire("key:y") is None  # another key is untouched
    finally:
        await stores.close()


async def test_a_killed_replicas_sessions_stop_counting_within_the_lease(redis_url: str) -> None:
    """Open sessions are leases its replica renews: while replica A lives, its two sessions
    count against the key (held for longer than a lease); once A is SIGKILLed, they lapse and
    the key opens sessions on B again, as a key whose sessions failed over must."""
    key = "sw_lease_key_9a8b7c6d5e4f3a2b1c0d"
    env = {
        "SPEECHWIRE_API_KEYS": json.dumps([key]),
        "SPEECHWIRE_REDIS_URL": redis_url,
        "SPEECHWIRE_MAX_SESSIONS_PER_KEY": "2",
        "SPEECHWIRE_SHARED_LEASE_S": "1.5",
    }
    a, b = ServerProcess(free_port(), **env), ServerProcess(free_port(), **env)
    headers = {"xi-api-key": key}
    query = "model_id=scribe_v2_realtime"
    try:
        a.start()
        b.start()
        url = f"ws://127.0.0.1:{a.port}/v1/speech-to-text/realtime?{query}"
        held = [await websockets.connect(url, additional_headers=headers) for _ in range(2)]
        for ws in held:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["message_type"] == "session_started"
        await asyncio.sleep(3.5)  # more than two leases: A renewed them
        assert await _open(b.port, query, headers) == "rate_limited"  # still two open for the key
        a.kill()
        await asyncio.sleep(2.5)  # one lease and a margin
        assert await _open(b.port, query, headers) == "session_started"
    finally:
        a.kill()
        b.kill()
