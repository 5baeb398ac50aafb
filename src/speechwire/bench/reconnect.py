"""``speechwire bench reconnect``: reconnect time of the resumable TTS client, for two faults.

1. Network cut, server alive: a loopback proxy aborts the connection mid-stream; time from the
   loss to the next open connection (backoff jitter + TCP + WebSocket handshake).
2. Server killed (SIGKILL) and started again at once: time from the loss to the next open
   connection, which includes the server's own start-up (espeak + Moonshine engines).

The server is a real ``speechwire serve`` process (``testing.serverprocess``), because only a
process can be killed the way a crash kills it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from speechwire.bench.harness import machine, spread, table, write_json
from speechwire.client.reconnect import GiveUpPolicy
from speechwire.client.resumable import ResumableTextToSpeech
from speechwire.consoles import stdout_console
from speechwire.testing.faultproxy import FaultProxy
from speechwire.testing.serverprocess import ServerProcess, free_port

SENTENCE = "This sentence is spoken again and again while the connection is cut. "


@dataclass
class FaultFigures:
    fault: str
    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float


async def speak_through(url: str, faults: int, fault: Callable[[], Awaitable[None]]) -> list[float]:
    """Speak one sentence per fault, inject the fault after a quarter second, return reconnect times."""
    tts = ResumableTextToSpeech(
        url,
        "espeak-en",
        output_format="pcm_16000",
        # Every fault is deliberate: never give up on them.
        give_up=GiveUpPolicy(max_attempts=500, quick_failures=500),
        ping_interval=0.5,
        ping_timeout=0.5,
    )
    await tts.connect()

    async def feed() -> None:
        for _ in range(faults):
            await tts.send(SENTENCE, flush=True)
            await asyncio.sleep(0.25)
            await fault()
            while tts.link.ws is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await tts.end()

    feeder = asyncio.create_task(feed())
    async for _ in tts:
        pass
    await feeder
    return list(tts.link.reconnect_times)


async def measure(cuts: int, restarts: int) -> list[FaultFigures]:
    server = ServerProcess(free_port())
    await asyncio.to_thread(server.start)
    try:
        proxy = await FaultProxy("127.0.0.1", server.port).start()

        async def cut() -> None:
            proxy.cut_all()

        try:
            network = await speak_through(f"ws://127.0.0.1:{proxy.port}", cuts, cut)
        finally:
            await proxy.stop()

        async def restart() -> None:
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)

        killed = await speak_through(f"ws://127.0.0.1:{server.port}", restarts, restart)
    finally:
        await asyncio.to_thread(server.stop)
    faults = (
        ("network cut (loopback proxy aborts the TCP connection), server alive", network),
        ("server killed (SIGKILL) and started again at once", killed),
    )
    return [FaultFigures(fault, len(times), *spread(times, 1000)) for fault, times in faults]


def run_reconnect_bench(args: argparse.Namespace) -> int:
    results = asyncio.run(measure(args.cuts, args.restarts))
    title = "Reconnect time of the resumable TTS client (loss → next open connection)"
    rows = [(r.fault, r.n, *(f"{ms:.0f}" for ms in (r.p50_ms, r.p95_ms, r.max_ms))) for r in results]
    stdout_console().print(table(title, ("fault", "n", "p50 ms", "p95 ms", "max ms"), rows, right_from=1))
    write_json(args.json, {"machine": machine(), "reconnect": [asdict(r) for r in results]})
    return 0
