"""A bounded worker pool for blocking engine calls, earliest deadline first.

Why not ``asyncio.to_thread``: its pool is unbounded in effect and first-come-first-served. Speech
has deadlines instead: a session waiting for its first sound must go before a session whose
client still has seconds of audio queued. Ordering by deadline keeps the most sessions real-time
on few cores.

Jobs also carry a ``Lane``: background lanes (a closed TTS context finishing audio its client
may be dropping) run only when no foreground job waits, so a barge-in's first phrase never
queues behind the reply it interrupted. A lane can turn background while its job waits, so the
queue is a list scanned at each pick (it holds about one job per stream) rather than a heap.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

PREEMPT_SLACK_S = 1.0
"""A running foreground job is stopped for a new one only when its deadline is this much later."""

_current = threading.local()
_abort_lock = threading.Lock()


def on_preempt(stop: Callable[[], object]) -> None:
    """Called by an engine inside a pool job: ``stop`` makes its blocking call end early (it may
    raise any exception then); the pool runs the job again later. Outside a job: no effect."""
    job: _Job | None = getattr(_current, "job", None)
    if job is None:
        return
    with _abort_lock:
        job.stops.append(stop)
        preempted = job.preempted
    if preempted:
        stop()


@dataclass(slots=True, eq=False)
class Lane:
    """The scheduling class of one stream's jobs; flip ``background`` when nobody waits on it."""

    background: bool = False


_FOREGROUND = Lane()


@dataclass(eq=False)
class _Job:
    deadline: float
    seq: int
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    queued_at: float = 0.0
    lane: Lane = field(default=_FOREGROUND)
    preempted: bool = False
    stops: list[Callable[[], object]] = field(default_factory=list)

    def key(self) -> tuple[bool, float, int]:
        return (self.lane.background, self.deadline, self.seq)


class EnginePool:
    """``workers`` threads take jobs by deadline; cancelled jobs are skipped, not run."""

    def __init__(
        self, workers: int, name: str = "engine", on_wait: Callable[[float], object] | None = None
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.name = name
        self.workers = workers
        self._heap: list[_Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._running: set[_Job] = set()
        self.preemptions = 0
        self.on_wait = on_wait
        """Called (on the worker thread) with each job's wait for a worker, for metrics."""
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, fn: Callable[[], T], deadline: float | None = None, lane: Lane | None = None) -> T:
        """Run ``fn`` on a worker; ``deadline`` is a ``time.monotonic()`` value (default: now).

        Foreground jobs go first, then earliest deadline; ``lane`` defaults to foreground.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        now = time.monotonic()
        job = _Job(
            now if deadline is None else deadline, next(self._seq), fn, future, loop, now, lane or _FOREGROUND
        )
        stops: list[Callable[[], object]] = []
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} pool is closed")
            self._heap.append(job)
            if not job.lane.background and len(self._running) >= self.workers:
                victim = self._victim(job)
                if victim is not None:
                    with _abort_lock:
                        victim.preempted = True
                        stops = list(victim.stops)
                    self.preemptions += 1
            self._cond.notify()
        for stop in stops:
            stop()
        return await future

    def _victim(self, job: _Job) -> _Job | None:
        """The running job ``job`` may stop: a background one, else the one whose audio is needed
        latest if that is ``PREEMPT_SLACK_S`` after ``job``'s (its stream has that much queued, so
        running it again later costs it nothing audible, while a waiting first phrase would be
        heard late by a whole job)."""
        running = [r for r in self._running if not r.preempted]
        background = [r for r in running if r.lane.background]
        if background:
            return background[0]
        latest = max(running, key=lambda r: r.deadline, default=None)
        if latest is not None and latest.deadline > job.deadline + PREEMPT_SLACK_S:
            return latest
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                job = min(self._heap, key=_Job.key)
                self._heap.remove(job)
                if job.future.cancelled():
                    continue
                self._running.add(job)
            if self.on_wait is not None:
                self.on_wait(time.monotonic() - job.queued_at)
            _current.job = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            finally:
                _current.job = None
                # Off the running set before its caller can wake: a job submitted then must not
                # count a finished one as preempted.
                with self._cond:
                    self._running.discard(job)
            if error is not None and job.preempted:
                self._requeue(job)
            else:
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)

    def _requeue(self, job: _Job) -> None:
        """A preempted job waits again, with its place (deadline, sequence) unchanged."""
        with _abort_lock:
            job.preempted = False
            job.stops.clear()
        with self._cond:
            self._heap.append(job)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """On the loop: hand the job's outcome to its caller, unless the caller gave up."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
