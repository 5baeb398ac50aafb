"""``speechwire bench tts``: time to first audio and real-time factor of streaming TTS over loopback.

Each run opens a ``stream-input`` socket, sends one sentence with ``flush``, and times from that
send to the first audio byte at the client (TTFA). The real-time factor is wall time from the
send to the final message divided by the seconds of audio received. Runs are repeated for 1, 4
and 8 sessions at once (every session counts as a run).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from rich.progress import Progress

from speechwire.audio.formats import AudioFormat
from speechwire.bench.harness import in_process, machine, server_url, spread, table, write_json
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
    async with TextToSpeechStream(url, voice, output_format=fmt.name, api_key=api_key) as tts:
        start = time.perf_counter()
        await tts.send(text + " ", flush=True)
        await tts.end()
        chunks = [chunk async for chunk in tts]
        total = time.perf_counter() - start
    ttfa = tts.latency.time_to_first_audio
    if ttfa is None:
        raise RuntimeError("no audio received")
    if fmt.codec == "pcm":  # exact, from the bytes
        audio_ms = sum(len(c.audio) for c in chunks) / (fmt.sample_rate * 2 / 1000)
    else:  # approximate, from the timing of the characters
        audio_ms = sum(c.alignment.end_ms for c in chunks if c.alignment is not None)
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
    rtf = spread([r.total_ms / r.audio_ms for r in results if r.audio_ms > 0])
    return Summary(concurrency, len(results), *spread([r.ttfa_ms for r in results]), *rtf[:2]), results


def run_relay_bench(args: argparse.Namespace) -> int:
    """``--relay``: the same runs straight to an upstream server and through a relay to it (the
    upstream stands in for the ElevenLabs cloud), so the difference is what the relay costs."""
    import secrets

    from pydantic import SecretStr

    from speechwire.config import Settings

    fmt = AudioFormat.parse(args.format)
    upstream_key, relay_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    unlimited: Any = {"rate_sessions_per_minute": 100_000, "rate_burst": 10_000, "stt_engines": []}
    results: dict[str, Any] = {}
    upstream_settings = Settings(api_keys=[SecretStr(upstream_key)], tts_engines=["piper"], **unlimited)
    with (
        in_process(upstream_settings) as upstream,
        in_process(
            Settings(
                api_keys=[SecretStr(relay_key)],
                tts_engines=["espeak"],
                elevenlabs_api_key=SecretStr(upstream_key),
                elevenlabs_base_url=upstream.http_url,
                tts_backend="elevenlabs",
                **unlimited,
            )
        ) as relay,
    ):
        paths = (("direct", upstream.ws_url, upstream_key), ("relayed", relay.ws_url, relay_key))
        for name, url, key in paths:
            summary, _ = asyncio.run(measure(url, args.voice, fmt, args.runs, 1, None, key))
            results[name] = asdict(summary)
    rows = [(name, f"{r['ttfa_p50_ms']:.1f}", f"{r['ttfa_p95_ms']:.1f}") for name, r in results.items()]
    title = f"TTS through a relay ({args.runs} runs, 1 session, {fmt.name})"
    stdout_console().print(table(title, ("path", "TTFA p50 ms", "TTFA p95 ms"), rows))
    write_json(args.json, {"machine": machine(), "relay": results})
    return 0


def run_tts_bench(args: argparse.Namespace) -> int:
    if getattr(args, "relay", False):
        return run_relay_bench(args)
    console = stdout_console()
    fmt = AudioFormat.parse(args.format)
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    with server_url(args.url) as url, Progress(console=console, transient=True) as progress:
        summaries = [
            asyncio.run(measure(url, args.voice, fmt, max(args.runs, level), level, progress))[0]
            for level in levels
        ]
    columns = ("sessions", "runs", "TTFA p50 ms", "TTFA p95 ms", "TTFA max ms", "RTF p50", "RTF p95")
    rows = []
    for s in summaries:
        ms = [f"{v:.1f}" for v in (s.ttfa_p50_ms, s.ttfa_p95_ms, s.ttfa_max_ms)]
        rows.append((s.concurrency, s.runs, *ms, f"{s.rtf_p50:.3f}", f"{s.rtf_p95:.3f}"))
    title = f"TTS over loopback: voice {args.voice}, {fmt.name}, flushed sentence → first audio byte"
    console.print(table(title, columns, rows, right_from=0))
    results = [asdict(s) for s in summaries]
    write_json(args.json, {"machine": machine(), "voice": args.voice, "format": fmt.name, "results": results})
    return 0
