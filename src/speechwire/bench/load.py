"""``speechwire bench load`` and ``speechwire bench soak``: capacity and endurance of one server.

The server runs as its own process (``speechwire serve --dev``), so its memory and CPU are its
own. Clients behave like users:

- a TTS session is a voice agent's reply: text arrives word by word at LLM pace (20 words a
  second) with a flush at each clause end, and the client plays what it receives in real time
  through ``audio.playback.PlaybackBuffer`` (the browser player's rule, 200 ms cushion). A level
  of N sessions (starts spread over 2 s) is real-time when no client ever runs dry before its
  reply has been fully received (no underrun) and the first audio comes within a second (p95);
- an STT session streams a recording at real-time pace with VAD commits; real-time when
  partials come at least every 1.5 s (p95) and every commit within 2 s of the end of speech.

``soak`` runs a mix of both for ``--minutes`` and samples the server's memory: it passes with
zero errors and resident memory flat (growth under 5 % from the first to the last minute).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from speechwire.audio.playback import PlaybackBuffer
from speechwire.bench.harness import full_server, table, write_json, yes_no
from speechwire.client.latency import percentile
from speechwire.client.tts import TextToSpeechStream
from speechwire.consoles import stdout_console
from speechwire.testing.serverprocess import ServerProcess

REPLY = (
    "Sure, I can help with that. Your flight to Lisbon leaves at a quarter past nine tomorrow "
    "morning from terminal two, and check-in closes forty minutes before departure. Would you "
    "like me to add a reminder to your calendar?"
)
CUSHION_S = 0.2
WORDS_PER_S = 20.0


@dataclass
class TTSRun:
    ttfa_s: float
    underruns: int
    worst_gap_s: float
    error: str | None = None


async def tts_session(url: str, delay_s: float) -> TTSRun:
    """One reply, paced like an LLM and flushed at each clause (as ``examples/voice_agent.py``
    does), played like a speaker. TTFA is from the first flush to the first audio."""
    await asyncio.sleep(delay_s)
    first_flush: float | None = None
    first: float | None = None
    # The browser player's rule: start once the cushion is queued; after an underrun resume as
    # soon as anything arrives (min 0), so each stall measures only how late the audio was.
    player = PlaybackBuffer(16000, target_s=CUSHION_S, min_s=0.0)
    last = 0.0
    try:
        async with TextToSpeechStream(url, "joe", output_format="pcm_16000") as tts:

            async def writer() -> None:
                nonlocal first_flush
                for word in REPLY.split():
                    clause_end = word[-1] in ",.?!"
                    await tts.send(word + " ", flush=clause_end)
                    if clause_end and first_flush is None:
                        first_flush = time.monotonic()
                    await asyncio.sleep(1 / WORDS_PER_S)
                await tts.end()

            task = asyncio.create_task(writer())
            async for chunk in tts:
                now = time.monotonic()
                if first is None:
                    first = now
                else:
                    player.elapse(now - last)  # what the speaker played since the last chunk
                last = now
                player.write(np.frombuffer(chunk.audio, np.int16))
            await task
    except Exception as exc:  # reported per level, not raised: a failure is a finding
        return TTSRun(float("nan"), 0, 0.0, f"{type(exc).__name__}: {exc}")
    ttfa = (first or time.monotonic()) - (first_flush or time.monotonic())
    return TTSRun(ttfa, player.underruns, player.longest_stall / player.sample_rate)


async def tts_level(url: str, sessions: int) -> dict[str, Any]:
    rng = random.Random(sessions)
    runs = await asyncio.gather(*(tts_session(url, rng.uniform(0, 2.0)) for _ in range(sessions)))
    ttfa = [r.ttfa_s for r in runs if r.error is None]
    errors = [r.error for r in runs if r.error is not None]
    underruns = sum(r.underruns for r in runs)
    ok = not errors and underruns == 0 and bool(ttfa) and percentile(ttfa, 95) <= 1.0
    return {
        "sessions": sessions,
        "ttfa_p50_ms": round(1000 * percentile(ttfa, 50), 1) if ttfa else None,
        "ttfa_p95_ms": round(1000 * percentile(ttfa, 95), 1) if ttfa else None,
        "underruns": underruns,
        "worst_gap_ms": round(1000 * max(r.worst_gap_s for r in runs), 1),
        "errors": errors[:3],
        "realtime_ok": ok,
    }


def run_load_bench(args: argparse.Namespace) -> int:
    from speechwire.bench.stt import capacity_level, capacity_row, default_speech_dir, load_manifest

    console = stdout_console()
    report: dict[str, Any] = {"tts": [], "stt": []}
    with full_server() as server, Progress(console=console, transient=True) as progress:
        levels = [int(n) for n in args.tts.split(",") if n]
        task = progress.add_task("TTS sessions", total=len(levels))
        asyncio.run(tts_level(server.url, 1))  # warm-up
        for n in levels:
            report["tts"].append(asyncio.run(tts_level(server.url, n)))
            progress.advance(task)
        files = load_manifest(Path(args.speech_dir) if args.speech_dir else default_speech_dir())
        probe = next(f for f in files if f[0].name == "librivox_0870.wav")
        levels = [int(n) for n in args.stt.split(",") if n]
        task = progress.add_task("STT streams", total=len(levels))
        for n in levels:
            report["stt"].append(asyncio.run(capacity_level(server.url, probe[0], probe[1], n)))
            progress.advance(task)
    columns = ("sessions", "TTFA p50 ms", "TTFA p95 ms", "underruns", "worst gap ms", "real-time")
    keys = ("sessions", "ttfa_p50_ms", "ttfa_p95_ms", "underruns", "worst_gap_ms")
    rows = [(*(r[k] for k in keys), yes_no(r["realtime_ok"])) for r in report["tts"]]
    console.print(table("TTS: concurrent LLM-paced replies played in real time", columns, rows))
    stt_columns = ("streams", "partial interval p95 s", "EOS→commit max s", "WER max", "real-time")
    stt_rows = [capacity_row(level) for level in report["stt"]]
    console.print(table("STT: concurrent real-time streams (VAD commits)", stt_columns, stt_rows))
    best_tts = max((r["sessions"] for r in report["tts"] if r["realtime_ok"]), default=0)
    best_stt = max((r["streams"] for r in report["stt"] if r["realtime_ok"]), default=0)
    console.print(f"real-time capacity: {best_tts} TTS sessions, {best_stt} STT streams")
    report["capacity"] = {"tts_sessions": best_tts, "stt_streams": best_stt}
    write_json(args.json, report)
    return 0


@dataclass
class SoakReport:
    minutes: float
    tts_sessions: int = 0
    stt_sessions: int = 0
    errors: list[str] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    growth: float = 0.0
    passed: bool = False


async def _soak(server: ServerProcess, minutes: float, report: SoakReport, progress: Progress) -> None:
    from speechwire.bench.stt import default_speech_dir, load_manifest, stream_file

    url = server.url
    files = [f for f in load_manifest(default_speech_dir()) if "long" not in f[0].name]
    end = time.monotonic() + minutes * 60
    start = time.monotonic()
    task = progress.add_task("soak", total=minutes * 60)

    async def tts_worker() -> None:
        while time.monotonic() < end:
            run = await tts_session(url, 0)
            report.tts_sessions += 1
            if run.error is not None:
                report.errors.append(run.error)

    async def stt_worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < end:
            path, ref, _ = rng.choice(files)
            try:
                await stream_file(url, path, ref, vad_silence=0.5)
            except Exception as exc:
                report.errors.append(f"stt {type(exc).__name__}: {exc}")
            report.stt_sessions += 1

    async def sampler() -> None:
        while time.monotonic() < end:
            report.rss_mib.append((round(time.monotonic() - start, 1), server.rss_kib() / 1024))
            progress.update(task, completed=time.monotonic() - start)
            await asyncio.sleep(5)

    await asyncio.gather(tts_worker(), tts_worker(), stt_worker(1), stt_worker(2), sampler())


def run_soak_bench(args: argparse.Namespace) -> int:
    console = stdout_console()
    report = SoakReport(args.minutes)
    with full_server() as server, Progress(console=console, transient=True) as progress:
        asyncio.run(_soak(server, args.minutes, report, progress))
    samples = report.rss_mib
    window = max(1, len(samples) // max(1, int(args.minutes)))  # about a minute of samples
    # Compare the second minute (after warm-up: engines' arenas, caches) with the last.
    first = [m for _, m in samples[window : 2 * window]] or [m for _, m in samples[:window]]
    last = [m for _, m in samples[-window:]]
    report.growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1 if first and last else 0.0
    report.passed = not report.errors and report.growth < 0.05
    console.print(
        f"soak {args.minutes:g} min: {report.tts_sessions} TTS + {report.stt_sessions} STT sessions, "
        f"{len(report.errors)} errors, RSS {samples[0][1]:.0f} → {samples[-1][1]:.0f} MiB "
        f"(growth {report.growth:+.1%} from minute 2 to the last), {'PASS' if report.passed else 'FAIL'}"
    )
    write_json(args.json, asdict(report))
    return 0 if report.passed else 1
