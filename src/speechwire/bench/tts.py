"""``speechwire bench tts``: time to first audio and real-time factor of streaming TTS over loopback.

Each run opens a ``stream-input`` socket, sends one sentence with ``flush``, and times from that
send to the first audio byte at the client (TTFA). The real-time factor is wall time from the
send to the final message divided by the seconds of audio received. Runs are repeated for 1, 4
and 8 sessions at once (every session counts as a run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress
from rich.table import Table

from speechwire.audio.formats import AudioFormat
from speechwire.client.latency import percentile
from speechwire.client.tts import TextToSpeechStream
from speechwire.consoles import stdout_console

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]


@dataclass
class RunResult:
    ttfa_ms: float
    total_ms: float
    audio_ms: float


@dataclass
class Summary:
    concurrency: int
    runs: int
    ttfa_p50_ms: float
    ttfa_p95_ms: float
    ttfa_max_ms: float
    rtf_p50: float
    rtf_p95: float


async def one_run(url: str, voice: str, fmt: AudioFormat, text: str, api_key: str | None = None) -> RunResult:
    bytes_per_ms = fmt.sample_rate * 2 / 1000 if fmt.codec == "pcm" else None
    async with TextToSpeechStream(url, voice, output_format=fmt.name, api_key=api_key) as tts:
        audio_bytes = 0
        start = time.perf_counter()
        await tts.send(text + " ", flush=True)
        await tts.end()
        audio_ms = 0.0
        async for chunk in tts:
            audio_bytes += len(chunk.audio)
            if chunk.alignment is not None:
                audio_ms += chunk.alignment.end_ms  # approximate; exact from bytes for PCM below
        total = time.perf_counter() - start
    ttfa = tts.latency.time_to_first_audio
    if ttfa is None:
        raise RuntimeError("no audio received")
    if bytes_per_ms is not None:
        audio_ms = audio_bytes / bytes_per_ms
    return RunResult(1000 * ttfa, 1000 * total, audio_ms)


async def measure(
    url: str,
    voice: str,
    fmt: AudioFormat,
    runs: int,
    concurrency: int,
    progress: Progress | None = None,
    api_key: str | None = None,
) -> tuple[Summary, list[RunResult]]:
    results: list[RunResult] = []
    task = progress.add_task(f"{concurrency} session(s)", total=runs) if progress else None
    await one_run(url, voice, fmt, "Warming up.", api_key)
    i = 0
    while len(results) < runs:
        batch = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(concurrency)]
        i += concurrency
        results += await asyncio.gather(*(one_run(url, voice, fmt, s, api_key) for s in batch))
        if progress is not None and task is not None:
            progress.update(task, completed=min(runs, len(results)))
        await asyncio.sleep(0.05)
    ttfa = [r.ttfa_ms for r in results]
    rtf = [r.total_ms / r.audio_ms for r in results if r.audio_ms > 0]
    summary = Summary(
        concurrency,
        len(results),
        percentile(ttfa, 50),
        percentile(ttfa, 95),
        max(ttfa),
        percentile(rtf, 50),
        percentile(rtf, 95),
    )
    return summary, results


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def run_relay_bench(args: argparse.Namespace) -> int:
    """``--relay``: the same runs straight to an upstream server and through a relay to it (the
    upstream stands in for the ElevenLabs cloud), so the difference is what the relay costs."""
    import secrets

    from pydantic import SecretStr

    from speechwire.config import Settings
    from speechwire.server.ops.runner import start_server

    console = stdout_console()
    fmt = AudioFormat.parse(args.format)
    upstream_key, relay_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    unlimited = {"rate_sessions_per_minute": 100_000, "rate_burst": 10_000}
    upstream = start_server(
        Settings(api_keys=[SecretStr(upstream_key)], tts_engines=["piper"], stt_engines=[], **unlimited)  # type: ignore[arg-type]
    )
    relay = start_server(
        Settings(
            api_keys=[SecretStr(relay_key)],
            tts_engines=["espeak"],
            stt_engines=[],
            elevenlabs_api_key=SecretStr(upstream_key),
            elevenlabs_base_url=upstream.http_url,
            tts_backend="elevenlabs",
            **unlimited,  # type: ignore[arg-type]
        )
    )
    table = Table(title=f"TTS through a relay ({args.runs} runs, 1 session, {fmt.name})")
    for column in ("path", "TTFA p50 ms", "TTFA p95 ms"):
        table.add_column(column)
    results: dict[str, Any] = {}
    try:
        for name, url, key in (
            ("direct", upstream.ws_url, upstream_key),
            ("relayed", relay.ws_url, relay_key),
        ):
            summary, _ = asyncio.run(measure(url, args.voice, fmt, args.runs, 1, None, key))
            results[name] = asdict(summary)
            table.add_row(name, f"{summary.ttfa_p50_ms:.1f}", f"{summary.ttfa_p95_ms:.1f}")
    finally:
        relay.stop()
        upstream.stop()
    console.print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine(), "relay": results}, indent=2))
    return 0


def run_tts_bench(args: argparse.Namespace) -> int:
    if getattr(args, "relay", False):
        return run_relay_bench(args)
    console = stdout_console()
    fmt = AudioFormat.parse(args.format)
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    running = None
    url = args.url
    if url is None:
        from speechwire.config import Settings
        from speechwire.server.ops.runner import start_server

        running = start_server(Settings(dev=True))
        url = running.ws_url
    try:
        summaries: list[Summary] = []
        with Progress(console=console, transient=True) as progress:
            for level in levels:
                summary, _ = asyncio.run(
                    measure(url, args.voice, fmt, max(args.runs, level), level, progress)
                )
                summaries.append(summary)
    finally:
        if running is not None:
            running.stop()
    table = Table(
        title=f"TTS over loopback: voice {args.voice}, {fmt.name}, flushed sentence → first audio byte"
    )
    for col in ("sessions", "runs", "TTFA p50 ms", "TTFA p95 ms", "TTFA max ms", "RTF p50", "RTF p95"):
        table.add_column(col, justify="right")
    for s in summaries:
        table.add_row(
            str(s.concurrency),
            str(s.runs),
            f"{s.ttfa_p50_ms:.1f}",
            f"{s.ttfa_p95_ms:.1f}",
            f"{s.ttfa_max_ms:.1f}",
            f"{s.rtf_p50:.3f}",
            f"{s.rtf_p95:.3f}",
        )
    console.print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "machine": machine(),
                    "voice": args.voice,
                    "format": fmt.name,
                    "results": [asdict(s) for s in summaries],
                },
                f,
                indent=2,
            )
    return 0
