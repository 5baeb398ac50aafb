"""``speechwire bench failover``: what a client sees when the replica serving it dies.

A cluster of real processes on loopback (``testing.cluster``: Redis, replicas, HAProxy with
``deploy/haproxy.cfg``) carries one reconnecting TTS stream and one reconnecting STT stream.
Each round SIGKILLs the replica holding one of them (alternately the TTS one and the STT one;
a stream that shares it is measured too), then starts that replica again. Measured per stream:
from the kill to the first audio (TTS) or transcript (STT) that arrives over the new connection
— backoff, HAProxy's retry and redispatch, the new session, the resumed work. At the end every
character sent must have been voiced exactly once.

``--capacity`` also measures how many LLM-paced TTS sessions stay real-time through the balancer
with 1, 2 and 3 replicas (``bench load``'s session and criterion), for the scaling ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from speechwire.audio.resample import resample
from speechwire.audio.wav import read_audio_file
from speechwire.bench.harness import machine, spread, table, write_json
from speechwire.client.reconnect import GiveUpPolicy, ReconnectPolicy
from speechwire.client.stt import CommittedTranscript, PartialTranscript, RealtimeTranscriber
from speechwire.client.tts import AudioChunk, TextToSpeechStream
from speechwire.consoles import stdout_console
from speechwire.testing.cluster import Cluster

PARAGRAPH = (
    "Round {n}. The replica that was speaking this paragraph may be gone by now, and another one "
    "carries on from the first character that was not voiced yet. Nothing is said twice, and "
    "nothing is skipped, whichever replica finishes the sentence. "
)


def policy() -> ReconnectPolicy:
    """Every kill is deliberate: never give up on them. Pings every 2 s notice a half-open socket
    (a balancer that died); a killed replica's sockets close at once on loopback anyway."""
    return ReconnectPolicy(
        GiveUpPolicy(max_attempts=500, quick_failures=500), ping_interval=2.0, ping_timeout=2.0
    )


class Arrivals:
    """When something arrived, and over which connection (0: the first, n: after n reconnects)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, int]] = []
        self._new = asyncio.Event()

    def add(self, connection: int) -> None:
        self.times.append((time.monotonic(), connection))
        self._new.set()

    async def first(self, since: int = 0, after: int = -1, timeout_s: float = 30.0) -> float:
        """The time of the first arrival from index ``since`` on, over a connection later than
        ``after`` (waiting for it)."""
        async with asyncio.timeout(timeout_s):
            while (found := next((t for t, c in self.times[since:] if c > after), None)) is None:
                self._new.clear()
                await self._new.wait()
        return found


class Speaker:
    """A reconnecting ``stream-input`` session through the balancer: text is said with ``say``
    (flushed), audio is collected with its arrival times, ``finish`` ends input and waits for
    ``isFinal``. Keep-alives every 5 s hold it open between rounds."""

    def __init__(self, url: str, voice: str = "espeak-en") -> None:
        self.tts = TextToSpeechStream(
            url, voice, output_format="pcm_16000", keepalive_s=5.0, reconnect=policy()
        )
        self.chunks: list[AudioChunk] = []
        self.arrivals = Arrivals()
        self._reader: asyncio.Task[None] | None = None

    @property
    def connection(self) -> int:
        return self.tts.link.reconnects

    @property
    def voiced(self) -> str:
        """Every character the audio received voices, in order (from alignment)."""
        return "".join(c.alignment.text for c in self.chunks if c.alignment is not None)

    async def start(self) -> None:
        await self.tts.connect()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for chunk in self.tts:
            self.chunks.append(chunk)
            self.arrivals.add(self.connection)

    async def say(self, text: str) -> None:
        await self.tts.send(text, flush=True)

    async def wait_voiced(self, timeout_s: float) -> None:
        """Until everything sent so far has been voiced."""
        deadline = time.monotonic() + timeout_s
        while self.voiced.rstrip() != self.tts.sent.rstrip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.tts.sent) - len(self.voiced)} characters still unvoiced")
            await asyncio.sleep(0.02)

    async def finish(self, timeout_s: float = 30.0) -> None:
        await self.tts.end()
        assert self._reader is not None
        await asyncio.wait_for(self._reader, timeout_s)


class Listener:
    """A reconnecting realtime STT session through the balancer, fed a recording at real-time
    pace (``feed``); records committed texts and when any transcript arrived."""

    def __init__(self, url: str) -> None:
        self.stt = RealtimeTranscriber(url, vad_silence_threshold_secs=0.5, reconnect=policy())
        self.committed: list[str] = []
        self.arrivals = Arrivals()
        self._reader: asyncio.Task[None] | None = None

    @property
    def connection(self) -> int:
        return self.stt.link.reconnects

    async def start(self) -> None:
        await self.stt.connect()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.stt.events():
            if isinstance(event, CommittedTranscript):
                if event.text:
                    self.committed.append(event.text)
            elif not isinstance(event, PartialTranscript):
                continue
            self.arrivals.add(self.connection)

    async def feed(self, pcm: npt.NDArray[np.int16], stop: asyncio.Event | None = None) -> None:
        """``pcm`` (16 kHz) in 100 ms chunks at real time; over and over until ``stop`` if given."""
        start, sent = time.monotonic(), 0
        while True:
            for offset in range(0, len(pcm), 1600):
                await self.stt.send_audio(pcm[offset : offset + 1600])
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * 0.1 - time.monotonic()))
                if stop is not None and stop.is_set():
                    return
            if stop is None:
                return

    async def finish(self, timeout_s: float = 30.0) -> None:
        await self.stt.finish(timeout_s)
        await self.stt.close()


def speech(path: Path, tail_silence_s: float = 1.0) -> npt.NDArray[np.int16]:
    """A recording as 16 kHz PCM with silence after it (so the VAD commits its last phrase)."""
    pcm, rate = read_audio_file(path)
    return np.concatenate([resample(pcm, rate, 16000), np.zeros(int(16000 * tail_silence_s), np.int16)])


def host_of(cluster: Cluster, kind: str, skip: set[int] | frozenset[int] = frozenset()) -> int | None:
    """The replica with an open session of ``kind`` (``tts`` or ``stt``), among those not in
    ``skip`` (being restarted: not listening yet)."""
    for i, replica in enumerate(cluster.replicas):
        if i in skip or replica.proc is None or replica.proc.poll() is not None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            if cluster.sessions_open(i).get(kind):
                return i
    return None


@dataclass
class FailoverReport:
    kills: int
    tts_resume_s: list[float] = field(default_factory=list)
    stt_resume_s: list[float] = field(default_factory=list)
    exactly_once: bool = False
    characters: int = 0
    committed: int = 0
    seconds: float = 0.0


class Restarts:
    """Killed replicas starting again in the background, so with three replicas or more the next
    kill need not wait for the last one's restart: only for one other replica to be up."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.running: dict[int, asyncio.Task[None]] = {}

    def start(self, replica: int) -> None:
        self.running[replica] = asyncio.create_task(asyncio.to_thread(self.cluster.restart, replica))

    async def reap(self) -> None:
        for replica, task in list(self.running.items()):
            if task.done():
                del self.running[replica]
                await task  # a restart that failed fails the run

    async def host(self, kind: str, timeout_s: float = 30.0) -> int:
        """The replica holding the ``kind`` session, once another replica is up to take it over."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.reap()
            skip = set(self.running)
            host = await asyncio.to_thread(host_of, self.cluster, kind, skip)
            others = len(self.cluster.replicas) - len(skip) - 1
            if host is not None and others > 0:
                return host
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica to kill under the {kind} session, or none to take it over")
            if self.running and others <= 0:
                await asyncio.wait(self.running.values(), return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.05)

    async def finish(self) -> None:
        await asyncio.gather(*self.running.values())
        self.running.clear()


async def failover(
    cluster: Cluster, kills: int, pcm: npt.NDArray[np.int16], budget_s: float
) -> FailoverReport:
    """``kills`` rounds (fewer if ``budget_s`` runs out) on a running ``cluster``."""
    report = FailoverReport(kills=0)
    begun = time.monotonic()
    speaker, listener = Speaker(cluster.url), Listener(cluster.url)
    await speaker.start()
    await listener.start()
    stop = asyncio.Event()
    feeder = asyncio.create_task(listener.feed(pcm, stop))
    restarts = Restarts(cluster)
    try:
        await listener.arrivals.first(timeout_s=20)  # transcripts flow
        for n in range(kills):
            if time.monotonic() - begun > budget_s:
                break
            kind = "tts" if n % 2 == 0 else "stt"
            victim = await restarts.host(kind)
            on_it = await asyncio.to_thread(cluster.sessions_open, victim)
            hit = [c for c, k in ((speaker, "tts"), (listener, "stt")) if on_it.get(k)]
            connections = {id(c): c.connection for c in hit}
            if kind == "tts":
                before = len(speaker.arrivals.times)
                await speaker.say(PARAGRAPH.format(n=n + 1))
                await speaker.arrivals.first(before)  # its first audio is out: kill mid-paragraph
            else:
                await asyncio.sleep(0.3)
            died = await asyncio.to_thread(cluster.kill, victim)
            report.kills += 1
            if speaker in hit and speaker.voiced.rstrip() == speaker.tts.sent.rstrip():
                await speaker.say("Nothing was left to resume, so this is said after the kill. ")
            for client in hit:
                resumed = await client.arrivals.first(after=connections[id(client)])
                (report.tts_resume_s if client is speaker else report.stt_resume_s).append(resumed - died)
            restarts.start(victim)
            await speaker.wait_voiced(30)
        await restarts.finish()
        stop.set()
        await feeder
        await speaker.finish()
        await listener.finish()
    finally:
        stop.set()
        feeder.cancel()
        with contextlib.suppress(Exception):
            await restarts.finish()
        with contextlib.suppress(Exception):
            await speaker.tts.close()
        with contextlib.suppress(Exception):
            await listener.stt.close()
    report.exactly_once = speaker.voiced.rstrip() == speaker.tts.sent.rstrip()
    report.characters = len(speaker.tts.sent)
    report.committed = len(listener.committed)
    report.seconds = round(time.monotonic() - begun, 1)
    return report


async def capacity(cluster: Cluster, levels: list[int]) -> tuple[int, list[dict[str, Any]]]:
    """The most ``bench load`` TTS sessions (LLM-paced, played in real time) that stay real-time
    through the balancer among ``levels`` (each tried, as ``bench load`` does), and every level's
    figures."""
    from speechwire.bench.load import tts_level

    for replica in cluster.replicas:  # warm each one up: a replica's first syntheses are slow
        await tts_level(replica.url, 1)
    tried = [await tts_level(cluster.url, n) for n in levels]
    return max((t["sessions"] for t in tried if t["realtime_ok"]), default=0), tried


async def throughput(cluster: Cluster, sessions: int) -> float:
    """Seconds of Piper audio the cluster synthesises per second, ``sessions`` replies at once as
    fast as it can (each sends ``bench load``'s reply in one flush): the engine work behind the
    real-time session count, less sensitive to a busy machine's scheduling than underruns."""
    from speechwire.bench.load import REPLY

    async def one() -> int:
        async with TextToSpeechStream(cluster.url, "joe", output_format="pcm_16000") as tts:
            await tts.send(REPLY)
            return sum(len(chunk.audio) for chunk in await tts.finish(timeout=120))

    start = time.monotonic()
    produced = await asyncio.gather(*(one() for _ in range(sessions)))
    return sum(produced) / 32000 / (time.monotonic() - start)


CAPACITY_ENGINES = {
    "SPEECHWIRE_TTS_ENGINES": '["piper", "espeak"]',
    "SPEECHWIRE_STT_ENGINES": '["moonshine"]',
}
"""``bench load``'s sessions speak with Piper (``joe``); Whisper is not needed for them."""


def run_failover_bench(args: argparse.Namespace) -> int:
    from speechwire.bench.stt import default_speech_dir

    console = stdout_console()
    result: dict[str, Any] = {"machine": machine(), "replicas": args.replicas}
    ok = True
    if args.kills > 0:
        pcm = speech(Path(args.speech_dir or default_speech_dir()) / "librivox_concat_long.wav")
        with Cluster(args.replicas, env={"SPEECHWIRE_DRAIN_S": "2"}) as cluster:
            report = asyncio.run(failover(cluster, args.kills, pcm, args.budget_s))
        ok = report.exactly_once
        measures = (
            ("TTS: kill → resumed audio", "tts", report.tts_resume_s),
            ("STT: kill → resumed transcript", "stt", report.stt_resume_s),
        )
        rows = [
            (what, len(times), *(f"{ms:.0f}" for ms in spread(times, 1000))) for what, _, times in measures
        ]
        title = f"Failover via HAProxy: {args.replicas} replicas, {report.kills} kills, {report.seconds:g} s"
        console.print(table(title, ("measure", "n", "p50 ms", "p95 ms", "max ms"), rows, right_from=1))
        console.print(
            f"TTS: {report.characters} characters sent, voiced exactly once: "
            f"{'yes' if report.exactly_once else 'NO'}; STT: {report.committed} committed transcripts"
        )
        result["failover"] = asdict(report)
        for _, kind, times in measures:
            p50, p95, worst = spread(times, 1000)
            result[f"{kind}_resume_ms"] = {"n": len(times), "p50": p50, "p95": p95, "max": worst}
    if args.capacity:
        levels = [int(n) for n in args.levels.split(",") if n]
        found: dict[int, int] = {}
        rate: dict[int, float] = {}
        result["capacity_levels"] = {}
        for replicas in [int(n) for n in args.capacity_replicas.split(",") if n]:
            with Cluster(replicas, env=CAPACITY_ENGINES) as cluster:
                found[replicas], result["capacity_levels"][str(replicas)] = asyncio.run(
                    capacity(cluster, levels)
                )
                rate[replicas] = asyncio.run(throughput(cluster, 4 * replicas))
        one, one_rate = found.get(1) or None, rate.get(1)
        rows = [
            (
                n,
                found[n],
                f"{found[n] / one:.2f}" if one else "-",
                f"{rate[n]:.1f}",
                f"{rate[n] / one_rate:.2f}" if one_rate else "-",
            )
            for n in found
        ]
        columns = ("replicas", "real-time sessions", "× one", "audio s per s", "× one")
        console.print(table("TTS capacity through HAProxy (bench load's sessions)", columns, rows))
        result["capacity"] = {str(n): found[n] for n in found}
        result["throughput_audio_s_per_s"] = {str(n): rate[n] for n in rate}
    write_json(args.json, result)
    return 0 if ok else 1
