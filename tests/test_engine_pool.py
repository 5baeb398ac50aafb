"""The engine pool runs jobs earliest-deadline-first and skips jobs whose caller gave up."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial

import pytest

from speechwire.engines.pool import EnginePool, Lane, on_preempt


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


async def test_background_lane_waits_for_foreground_jobs() -> None:
    pool = EnginePool(1)
    order: list[str] = []
    gate = threading.Event()
    try:
        blocker = asyncio.ensure_future(pool.run(gate.wait))
        await asyncio.sleep(0.05)
        closed = Lane(background=True)
        late = asyncio.ensure_future(pool.run(lambda: order.append("closed"), time.monotonic() - 10, closed))
        lane = Lane()
        turned = asyncio.ensure_future(pool.run(lambda: order.append("turned"), time.monotonic() - 5, lane))
        lane.background = True  # the context closed while its job waited
        new = asyncio.ensure_future(pool.run(lambda: order.append("new"), time.monotonic() + 5))
        gate.set()
        await asyncio.gather(blocker, late, turned, new)
        assert order == ["new", "closed", "turned"]  # foreground first, then by deadline
    finally:
        pool.close()


async def test_running_background_job_is_preempted_and_run_again() -> None:
    pool = EnginePool(1)
    runs: list[str] = []

    def long_job() -> str:
        stop = threading.Event()
        on_preempt(stop.set)
        runs.append("start")
        if not stop.wait(0.5 if len(runs) == 1 else 0.0):
            return "done"
        raise RuntimeError("terminated")

    try:
        lane = Lane()
        old = asyncio.ensure_future(pool.run(long_job, lane=lane))
        await asyncio.sleep(0.05)
        lane.background = True
        t0 = time.monotonic()
        assert await pool.run(lambda: "first phrase") == "first phrase"
        assert time.monotonic() - t0 < 0.2  # did not wait for the 0.5 s job
        assert await old == "done" and runs == ["start", "start"] and pool.preemptions == 1
    finally:
        pool.close()


async def test_running_job_far_ahead_of_its_deadline_is_preempted() -> None:
    """Earliest deadline first with preemption: a job whose audio is needed seconds from now (a
    stream with that much queued) stops for a first phrase due now; one due soon does not."""
    pool = EnginePool(1)
    runs: list[str] = []

    def long_job(name: str) -> str:
        stop = threading.Event()
        on_preempt(stop.set)
        runs.append(name)
        if not stop.wait(0.5 if runs.count(name) == 1 else 0.0):
            return "done"
        raise RuntimeError("terminated")

    try:
        ahead = asyncio.ensure_future(pool.run(partial(long_job, "ahead"), time.monotonic() + 5))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        assert await pool.run(lambda: "first phrase") == "first phrase"
        assert time.monotonic() - t0 < 0.2  # did not wait for the job due in 5 s
        assert await ahead == "done" and runs == ["ahead", "ahead"] and pool.preemptions == 1

        due = asyncio.ensure_future(pool.run(partial(long_job, "due"), time.monotonic() + 0.3))
        await asyncio.sleep(0.05)
        assert await pool.run(lambda: "first phrase") == "first phrase"
        assert await due == "done" and runs.count("due") == 1 and pool.preemptions == 1
    finally:
        pool.close()


def test_espeak_stops_when_preempted() -> None:
    """espeak-ng ends a running synthesis when its callback says so; the pool then runs it again."""
    from speechwire.engines.base import SynthesisOptions
    from speechwire.engines.espeak import EspeakEngine

    engine = EspeakEngine()
    engine.load()
    pool = EnginePool(1)
    text = "This sentence is long enough to take espeak a few milliseconds to say. " * 30
    started = threading.Event()

    def long_job() -> int:
        started.set()
        return len(engine.synthesize(text, "espeak-en", SynthesisOptions()).pcm)

    async def both() -> tuple[int, str]:
        long = asyncio.ensure_future(pool.run(long_job, time.monotonic() + 5))
        await asyncio.to_thread(started.wait, 10)  # the job runs (about 0.2 s of espeak work)
        short = await pool.run(lambda: "urgent")
        return await long, short

    try:
        samples, short = asyncio.run(both())
        whole = len(engine.synthesize(text, "espeak-en", SynthesisOptions()).pcm)
        # Run again in full, nothing lost (espeak's own length varies by a few hundred samples).
        assert short == "urgent" and pool.preemptions == 1 and abs(samples - whole) < whole / 100
    finally:
        pool.close()
