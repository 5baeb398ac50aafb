"""Reconnect time of the resumable TTS client, for two kinds of fault.

1. Network cut, server alive: a loopback proxy aborts the connection mid-stream; time from the
   loss to the next open connection (backoff jitter + TCP + WebSocket handshake).
2. Server killed (SIGKILL) and started again at once: time from the loss to the next open
   connection, which includes the server's own start-up (espeak + Moonshine engines).

Run: ``.venv/bin/python benchmarks/reconnect.py [--cuts 30] [--restarts 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from faultproxy import FaultProxy, Plan
from speechwire.client.latency import percentile
from speechwire.client.reconnect import GiveUpPolicy
from speechwire.client.resumable import ResumableTextToSpeech

SENTENCE = "This sentence is spoken again and again while the connection is cut. "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SPEECHWIRE_TTS_ENGINES": '["espeak"]', "SPEECHWIRE_STT_ENGINES": '["moonshine"]'}
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechwire.cli", "serve", "--dev", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.02)


async def speak_through(url: str, faults: int, fault: object) -> list[float]:
    tts = ResumableTextToSpeech(
        url,
        "espeak-en",
        output_format="pcm_16000",
        give_up=GiveUpPolicy(max_attempts=500, quick_failures=500),
        ping_interval=0.5,
        ping_timeout=0.5,
    )
    await tts.connect()

    async def feed() -> None:
        for _ in range(faults):
            await tts.send(SENTENCE, flush=True)
            await asyncio.sleep(0.25)
            await fault()  # type: ignore[operator]
            while tts.link.ws is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await tts.end()

    feeder = asyncio.create_task(feed())
    async for _ in tts:
        pass
    await feeder
    return tts.link.reconnect_times


async def main(cuts: int, restarts: int) -> None:
    port = free_port()
    proc = start(port)
    proxy = await FaultProxy("127.0.0.1", port, planner=lambda n: Plan()).start()

    async def cut() -> None:
        proxy.cut_all()

    network = await speak_through(f"ws://127.0.0.1:{proxy.port}", cuts, cut)
    await proxy.stop()

    async def restart() -> None:
        nonlocal proc
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = await asyncio.to_thread(start, port)

    killed = await speak_through(f"ws://127.0.0.1:{port}", restarts, restart)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    for name, times in (("network cut, server alive", network), ("server killed and restarted", killed)):
        print(
            f"{name}: n={len(times)} p50 {1000 * percentile(times, 50):.0f} ms, "
            f"p95 {1000 * percentile(times, 95):.0f} ms, max {1000 * max(times):.0f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--restarts", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.cuts, args.restarts))
