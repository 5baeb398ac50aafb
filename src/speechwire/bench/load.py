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
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress
from rich.table import Table

from speechwire.audio.playback import PlaybackBuffer
from speechwire.client.latency import percentile
from speechwire.client.tts import TextToSpeechStream
from speechwire.consoles import stdout_console
from speechwire.testing.serverprocess import ServerProcess, free_port

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
    audio_s: float
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
    audio_s = 0.0
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
                audio_s += len(chunk.audio) / 32000
                if first is None:
                    first = now
                else:
                    player.elapse(now - last)  # what the speaker played since the last chunk
                last = now
                player.write(np.frombuffer(chunk.audio, np.int16))
            await task
    except Exception as exc:  # reported per level, not raised: a failure is a finding
        return TTSRun(float("nan"), 0, 0.0, audio_s, f"{type(exc).__name__}: {exc}")
    ttfa = (first or time.monotonic()) - (first_flush or time.monotonic())
    return TTSRun(ttfa, player.underruns, player.longest_stall / player.sample_rate, audio_s)


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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_load_bench(args: argparse.Namespace) -> int:
    from speechwire.bench.stt import capacity_level, default_speech_dir, load_manifest

    console = stdout_console()
    server = ServerProcess(free_port(), "--log-level", "warning", light=False)
    server.start()
    url = server.url
    report: dict[str, Any] = {"tts": [], "stt": []}
    try:
        with Progress(console=console, transient=True) as progress:
            levels = [int(n) for n in args.tts.split(",") if n]
            task = progress.add_task("TTS sessions", total=len(levels))
            asyncio.run(tts_level(url, 1))  # warm-up
            for n in levels:
                report["tts"].append(asyncio.run(tts_level(url, n)))
                progress.advance(task)
            files = load_manifest(Path(args.speech_dir) if args.speech_dir else default_speech_dir())
            probe = next(f for f in files if f[0].name == "librivox_0870.wav")
            levels = [int(n) for n in args.stt.split(",") if n]
            task = progress.add_task("STT streams", total=len(levels))
            for n in levels:
                report["stt"].append(asyncio.run(capacity_level(url, probe[0], probe[1], n)))
                progress.advance(task)
    finally:
        server.stop()
    table = Table(title="TTS: concurrent LLM-paced replies played in real time")
    for column in ("sessions", "TTFA p50 ms", "TTFA p95 ms", "underruns", "worst gap ms", "real-time"):
        table.add_column(column)
    for row in report["tts"]:
        table.add_row(
            str(row["sessions"]), str(row["ttfa_p50_ms"]), str(row["ttfa_p95_ms"]),
            str(row["underruns"]), str(row["worst_gap_ms"]), "yes" if row["realtime_ok"] else "no",
        )  # fmt: skip
    console.print(table)
    table = Table(title="STT: concurrent real-time streams (VAD commits)")
    for column in ("streams", "partial interval p95 s", "EOS→commit max s", "WER max", "real-time"):
        table.add_column(column)
    for row in report["stt"]:
        table.add_row(
            str(row["streams"]), f"{row['partial_interval_p95_s']:.2f}", f"{row['eos_to_commit_max_s']:.2f}",
            f"{row['wer_max']:.1%}", "yes" if row["realtime_ok"] else "no",
        )  # fmt: skip
    console.print(table)
    best_tts = max((r["sessions"] for r in report["tts"] if r["realtime_ok"]), default=0)
    best_stt = max((r["streams"] for r in report["stt"] if r["realtime_ok"]), default=0)
    console.print(f"real-time capacity: {best_tts} TTS sessions, {best_stt} STT streams")
    report["capacity"] = {"tts_sessions": best_tts, "stt_streams": best_stt}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
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


async def _soak(url: str, pid: int, minutes: float, report: SoakReport, progress: Progress) -> None:
    from speechwire.bench.stt import default_speech_dir, load_manifest, stream_file

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
            report.rss_mib.append((round(time.monotonic() - start, 1), rss_mib(pid)))
            progress.update(task, completed=time.monotonic() - start)
            await asyncio.sleep(5)

    await asyncio.gather(tts_worker(), tts_worker(), stt_worker(1), stt_worker(2), sampler())


def run_soak_bench(args: argparse.Namespace) -> int:
    console = stdout_console()
    server = ServerProcess(free_port(), "--log-level", "warning", light=False)
    server.start()
    url = server.url
    report = SoakReport(args.minutes)
    try:
        with Progress(console=console, transient=True) as progress:
            asyncio.run(_soak(url, server.pid, args.minutes, report, progress))
    finally:
        server.stop()
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
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.passed else 1
