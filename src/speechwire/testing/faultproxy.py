"""A loopback TCP proxy that injects faults: cuts, stalls, delay and jitter.

Each accepted connection gets a ``Plan`` from the test's ``planner``: after ``cut_after`` bytes
(both directions counted) both sides are aborted; after ``stall_after`` bytes forwarding stops
for ``stall_s``; every chunk is delayed by ``delay_s`` plus up to ``jitter_s``. Listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Plan:
    cut_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    planner: Callable[[int], Plan] = field(default=lambda n: Plan())
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    cuts: int = 0
    stalls: int = 0
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def faults(self) -> int:
        return self.cuts + self.stalls

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self._server.wait_closed()

    def cut_all(self) -> None:
        """Abort every open connection now (as a network failure would)."""
        for w in list(self._writers):
            w.transport.abort()
            self.cuts += 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        plan = self.planner(index)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        state = {"bytes": 0, "stalled": False, "cut": False}

        def abort() -> None:
            if not state["cut"]:
                state["cut"] = True
                self.cuts += 1
            writer.transport.abort()
            up_writer.transport.abort()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(4096)
                    if not data:
                        break
                    if plan.delay_s or plan.jitter_s:
                        await asyncio.sleep(plan.delay_s + self.rng.uniform(0, plan.jitter_s))
                    state["bytes"] += len(data)
                    if (
                        plan.stall_after is not None
                        and not state["stalled"]
                        and state["bytes"] >= plan.stall_after
                    ):
                        state["stalled"] = True
                        self.stalls += 1
                        await asyncio.sleep(plan.stall_s)
                    if plan.cut_after is not None and state["bytes"] >= plan.cut_after:
                        abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
