"""``speechwire bench stt``: realtime STT accuracy, latency, cadence and capacity over loopback.

The server runs as a separate process (``speechwire serve``) so that its CPU time can be read
from /proc and the clients do not share its interpreter.

1. WER: every file of the speech set streamed at real-time pace with VAD commits, ``--parallel``
   files at once; WER per file and overall (text normalised on both sides).
2. Latency, one stream at a time: end of speech → committed transcript with VAD commit at the
   protocol's minimum silence (0.3 s; the figure includes that wait), and with a manual commit
   sent right at the end of the audio; partial cadence; server CPU per audio second.
3. Capacity: N streams at once at real-time pace; a level passes when every stream gets partials
   at least every 1.5 s (p95) and every commit within 1.5 s of the end of speech.

The server loads the engine under test and Whisper base, as the default configuration does, so
sessions without ``language_code`` (the default here: what most clients send) have their language
detected; ``language_code`` (``--language-code`` once the CLI has it; ``en`` skips detection,
``fr`` measures the multilingual engine) is sent with every session. The cost of one detection
call is timed on the latency files in this process (Whisper base, 2 threads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress, TaskID

from speechwire.audio.resample import resample
from speechwire.audio.wav import read_audio_file
from speechwire.bench.harness import table, write_json, yes_no
from speechwire.bench.wer import WerResult, corpus_wer, wer
from speechwire.client.latency import percentile
from speechwire.client.stt import CommittedTranscript, RealtimeTranscriber, paced_chunks
from speechwire.consoles import stderr_console, stdout_console
from speechwire.testing.serverprocess import ServerProcess, free_port


@dataclass
class StreamResult:
    file: str
    reference: str
    committed: list[str]
    partial_intervals: list[float]
    eos_to_commit: list[float]
    commit_to_committed: list[float] = field(default_factory=list)

    @property
    def hypothesis(self) -> str:
        return " ".join(self.committed)


@dataclass
class Report:
    engine: str
    language_code: str | None = None
    per_file: list[dict[str, Any]] = field(default_factory=list)
    overall_wer: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)
    capacity: list[dict[str, Any]] = field(default_factory=list)
    max_realtime_streams: int = 0
    detection_ms: dict[str, float] = field(default_factory=dict)


class Steps:
    """Progress for a run that takes a minute or more: a rich bar per phase on a terminal, one
    plain line per step when stderr is piped (a CI log gets lines, not bar redraws). On stderr,
    so stdout holds only the results."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(console=console, transient=True) if console.is_terminal else None
        self.task: TaskID | None = None
        self.name = ""
        self.done = self.total = 0

    def __enter__(self) -> Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def phase(self, name: str, total: int) -> None:
        self.name, self.done, self.total = name, 0, total
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(name, total=total)

    def step(self, message: str) -> None:
        """One step of the phase done; ``message`` says what it found."""
        self.done += 1
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)
            self.progress.console.print(f"{self.name}: {message}", markup=False, highlight=False)
        else:
            self.console.print(
                f"[{self.done}/{self.total}] {self.name}: {message}", markup=False, highlight=False
            )


def default_speech_dir() -> Path:
    return Path.cwd().parent / "shared" / "speech" / "dev"


def load_manifest(folder: Path) -> list[tuple[Path, str, float]]:
    with (folder / "manifest.tsv").open(encoding="utf-8") as f:
        return [
            (folder / r["file"], r["transcript"], float(r["duration_s"]))
            for r in csv.DictReader(f, delimiter="\t")
        ]


MULTILINGUAL = "whisper_base"
"""Loaded beside the engine under test, as by default: it detects and hears other languages."""
DETECT_AFTER_S = 2.0
"""Audio the detection timing gets (the server's ``stt_detect_after_s`` default)."""


async def stream_file(
    url: str,
    path: Path,
    reference: str,
    *,
    vad_silence: float,
    manual: bool = False,
    realtime: bool = True,
    language_code: str | None = None,
) -> StreamResult:
    pcm, rate = read_audio_file(path)
    pcm16k: npt.NDArray[np.int16] = resample(pcm, rate, 16000)
    committed: list[str] = []
    strategy = "manual" if manual else "vad"
    async with RealtimeTranscriber(
        url, commit_strategy=strategy, vad_silence_threshold_secs=vad_silence, language_code=language_code
    ) as stt:

        async def read() -> None:
            async for event in stt.events():
                if isinstance(event, CommittedTranscript):
                    committed.append(event.text)

        reader = asyncio.create_task(read())
        tail = 0.0 if manual else vad_silence + 1.0
        await stt.stream_pcm(paced_chunks(pcm16k, 16000, 100, realtime, tail_silence_s=tail))
        if manual:
            await stt.commit()
        for _ in range(100):
            if not stt._speech_since_commit:
                break
            await asyncio.sleep(0.05)
        if stt._speech_since_commit:  # the VAD never committed the end: commit by hand
            await stt.commit()
            await asyncio.sleep(1.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    lat = stt.latency
    timings = (lat.partial_intervals, lat.end_of_speech_to_commit, lat.commit_to_committed)
    return StreamResult(path.name, reference, committed, *(list(t) for t in timings))


async def wer_pass(
    url: str,
    files: list[tuple[Path, str, float]],
    parallel: int,
    steps: Steps,
    language_code: str | None = None,
) -> tuple[list[StreamResult], WerResult]:
    semaphore = asyncio.Semaphore(parallel)

    async def one(path: Path, ref: str) -> StreamResult:
        async with semaphore:
            result = await stream_file(url, path, ref, vad_silence=0.5, language_code=language_code)
            steps.step(f"{path.name}: WER {wer(ref, result.hypothesis).rate:.1%}")
            return result

    results = list(await asyncio.gather(*(one(p, r) for p, r, _ in files)))  # in the files' order
    return results, corpus_wer((r.reference, r.hypothesis) for r in results)


async def capacity_level(url: str, path: Path, ref: str, n: int) -> dict[str, Any]:
    results = await asyncio.gather(*(stream_file(url, path, ref, vad_silence=0.5) for _ in range(n)))
    intervals = [x for r in results for x in r.partial_intervals]
    eos = [x for r in results for x in r.eos_to_commit]
    wers = [wer(ref, r.hypothesis).rate for r in results]
    ok = bool(intervals) and percentile(intervals, 95) <= 1.5 and bool(eos) and max(eos) <= 1.5 + 0.5
    return {
        "streams": n,
        "partial_interval_p95_s": percentile(intervals, 95),
        "eos_to_commit_max_s": max(eos) if eos else float("nan"),
        "wer_max": max(wers),
        "realtime_ok": ok,
    }


def capacity_row(level: dict[str, Any]) -> tuple[object, ...]:
    """A ``capacity_level`` result as table cells (``bench stt`` and ``bench load`` print it)."""
    interval, eos, worst = level["partial_interval_p95_s"], level["eos_to_commit_max_s"], level["wer_max"]
    return level["streams"], f"{interval:.2f}", f"{eos:.2f}", f"{worst:.1%}", yes_no(level["realtime_ok"])


def run_stt_bench(args: argparse.Namespace) -> int:
    steps = Steps(stderr_console())
    files = load_manifest(Path(args.speech_dir) if args.speech_dir else default_speech_dir())
    report = Report(engine=args.engine, language_code=getattr(args, "language_code", None))
    with contextlib.ExitStack() as stack:
        server, url = None, args.url
        if url is None:
            engines = [args.engine, *([] if args.engine == MULTILINGUAL else [MULTILINGUAL])]
            steps.console.print(
                f"starting a server with {', '.join(engines)} (a few seconds)", highlight=False
            )
            server = ServerProcess(free_port(), SPEECHWIRE_STT_ENGINES=json.dumps(engines))
            server.start(timeout_s=30)
            stack.callback(server.stop)
            url = server.url
        with steps:
            _run_passes(args, url, files, server, report, steps)
    print_report(stdout_console(), report)
    write_json(args.json, asdict(report))
    return 0


def _run_passes(
    args: argparse.Namespace,
    url: str,
    files: list[tuple[Path, str, float]],
    server: ServerProcess | None,
    report: Report,
    steps: Steps,
) -> None:
    """The three passes (WER, latency, capacity), filling ``report`` and telling ``steps``."""
    wer_files = files if not args.quick else files[:4]
    steps.phase("WER", len(wer_files))
    language = report.language_code
    results, total = asyncio.run(wer_pass(url, wer_files, args.parallel, steps, language))
    scores = [wer(r.reference, r.hypothesis) for r in results]
    report.per_file = [
        {"file": r.file, "wer": w.rate, "words": w.words, "hypothesis": r.hypothesis}
        for r, w in zip(results, scores, strict=True)
    ]
    report.overall_wer = total.rate
    short = [f for f in files if 2.0 <= f[2] <= 12.0 and "noisy" not in f[0].name][
        : 4 if args.quick else None
    ]
    cpu_before = server.cpu_seconds() if server else 0.0
    wall_audio = 0.0
    vad_lat: list[float] = []
    manual_lat: list[float] = []
    cadence: list[float] = []
    steps.phase("latency", len(short))
    for path, ref, duration in short:
        r = asyncio.run(stream_file(url, path, ref, vad_silence=0.3, language_code=language))
        vad_lat += r.eos_to_commit
        cadence += r.partial_intervals
        wall_audio += duration + 1.3
        m = asyncio.run(stream_file(url, path, ref, vad_silence=0.3, manual=True, language_code=language))
        manual_lat += m.commit_to_committed
        wall_audio += duration
        steps.step(f"{path.name}: VAD and manual commit")
    cpu = (server.cpu_seconds() - cpu_before) if server else float("nan")
    series = ("vad_0.3s_eos_to_commit", vad_lat), ("manual_commit_to_committed", manual_lat)
    for name, values in (*series, ("partial_interval", cadence)):
        report.latency |= {f"{name}_p{q}_ms": 1000 * percentile(values, q) for q in (50, 95)}
    report.latency["server_cpu_per_audio_second"] = cpu / wall_audio if wall_audio else float("nan")
    report.latency["segments"] = float(len(vad_lat) + len(manual_lat))
    if language is None:
        report.detection_ms = detection_timing([path for path, _, _ in short])
    probe = next((f for f in files if f[0].name == "lj_LJ001-0001.wav"), files[0])
    levels = [int(x) for x in str(args.streams).split(",") if x.strip()]
    steps.phase("capacity", len(levels))
    for n in levels:
        level = asyncio.run(capacity_level(url, probe[0], probe[1], n))
        report.capacity.append(level)
        steps.step(f"{n} streams: {'real time' if level['realtime_ok'] else 'too slow'}")
        if level["realtime_ok"]:
            report.max_realtime_streams = n
        else:
            break


def detection_timing(paths: list[Path], runs: int = 3) -> dict[str, float]:
    """Milliseconds of one language detection (Whisper base, 2 threads) on the first
    ``DETECT_AFTER_S`` of each file, in this process (the server's own calls are not visible)."""
    from speechwire.engines.whisper import WhisperEngine

    engine = WhisperEngine(cpu_threads=2, multilingual=True)
    engine.load()
    times: list[float] = []
    for path in paths:
        pcm, rate = read_audio_file(path)
        audio = resample(pcm, rate, 16000)[: int(DETECT_AFTER_S * 16000)]
        engine.detect_language(audio)  # warm
        for _ in range(runs):
            start = time.perf_counter()
            engine.detect_language(audio)
            times.append(1000 * (time.perf_counter() - start))
    return {f"p{q}": percentile(times, q) for q in (50, 95)} if times else {}


def print_report(console: Console, report: Report) -> None:
    """The results as tables (WER per file, latency, capacity), not dicts."""
    title = f"Realtime STT ({report.engine}): WER per file, streamed at real-time pace, VAD commit"
    rows: list[tuple[object, ...]] = [(r["file"], r["words"], f"{r['wer']:.1%}") for r in report.per_file]
    rows.append(("[b]overall[/b]", "", f"[b]{report.overall_wer:.1%}[/b]"))
    console.print(table(title, ("file", "words", "WER"), rows, right_from=1))
    rows = [(key, f"{v:.3f}" if "cpu" in key else f"{v:.1f}") for key, v in report.latency.items()]
    rows += [(f"language_detection_{q}_ms", f"{v:.1f}") for q, v in report.detection_ms.items()]
    rows.append(("language_code sent", report.language_code or "none (detected)"))
    console.print(table("Latency (one stream at a time) and server CPU", ("measure", "value"), rows, 1))
    columns = ("streams", "partial interval p95 s", "end of speech → commit max s", "WER max", "real time")
    rows = [capacity_row(level) for level in report.capacity]
    console.print(table("Capacity: concurrent streams at real-time pace", columns, rows, right_from=0))
    console.print(f"max concurrent real-time streams: {report.max_realtime_streams}")
