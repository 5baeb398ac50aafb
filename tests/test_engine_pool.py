"""The engine pool runs jobs earliest-deadline-first and skips jobs whose caller gave up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from speechwire.engines.pool import EnginePool


async def test_jobs_run_in_deadline_order_not_arrival_order() -> None:
    pool = EnginePool(1, "test")
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = asyncio.create_task(pool.run(gate.wait))  # occupies the only worker
        await asyncio.sleep(0.05)
        now = time.monotonic()
        late = asyncio.create_task(pool.run(lambda: order.append("late"), now + 5))
        soon = asyncio.create_task(pool.run(lambda: order.append("soon"), now + 1))
        urgent = asyncio.create_task(pool.run(lambda: order.append("urgent"), now))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, late, soon, urgent)
        assert order == ["urgent", "soon", "late"]
    finally:
        pool.close()


async def test_cancelled_jobs_are_skipped() -> None:
    pool = EnginePool(1, "test")
    gate = threading.Event()
    ran: list[int] = []
    try:
        blocker = asyncio.create_task(pool.run(gate.wait))
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(pool.run(lambda: ran.append(1)))
        await asyncio.sleep(0.05)
        doomed.cancel()
        gate.set()
        await blocker
        await pool.run(lambda: ran.append(2))
        assert ran == [2]
    finally:
        pool.close()


async def test_exceptions_reach_the_caller() -> None:
    pool = EnginePool(2, "test")

    def boom() -> None:
        raise ValueError("engine failed")

    try:
        with pytest.raises(ValueError, match="engine failed"):
            await pool.run(boom)
        assert await pool.run(lambda: 42) == 42
    finally:
        pool.close()
