"""Past one machine: HAProxy (``deploy/haproxy.cfg``) in front of two replicas sharing one Redis,
all real processes on loopback (``speechwire.testing.cluster``; ``make test`` installs Debian's
haproxy and redis-server).

Sessions spread by least connections; a full replica turns unready and is skipped; a replica
killed (SIGKILL) under a TTS and an STT stream loses no character and no committed transcript;
a rolling restart (SIGTERM, readiness off first, drain, 1001) under steady load shows clients
no error; a single-use token minted on one replica works once on any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import websockets

from speechwire.bench.failover import Listener, Speaker, failover, speech
from speechwire.bench.wer import wer
from speechwire.client.tts import TextToSpeechStream
from speechwire.config import Settings
from speechwire.server.app import create_app
from speechwire.server.ops.runner import start_server
from speechwire.testing.cluster import Cluster, haproxy_binary
from speechwire.testing.serverprocess import ServerProcess

from .conftest import SPEECH_DIR, speech_manifest

TTS_CAP = 4
"""Each replica's ``max_tts_sessions``: small, so filling one takes four sockets; one replica
alone still has a slot free under the rolling restart's load of three TTS sessions (were it
full, HAProxy would have no server to send sessions to, and would answer 503)."""
TTS_PATH = "/v1/text-to-speech/espeak-en/stream-input?output_format=pcm_16000"

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="make test installs Debian's haproxy and redis-server"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    env = {
        "SPEECHWIRE_MAX_TTS_SESSIONS": str(TTS_CAP),
        "SPEECHWIRE_DRAIN_S": "2",
        "SPEECHWIRE_DRAIN_NOTICE_S": "1",
    }
    with Cluster(2, env=env) as running:
        yield running


@pytest.fixture
def healthy(cluster: Cluster) -> Cluster:
    """The cluster with both replicas up and idle (a test that broke one must have mended it)."""
    for i in range(2):
        cluster.wait_status(i, "UP")
    return cluster


@contextlib.asynccontextmanager
async def idle_tts(url: str, n: int) -> AsyncIterator[list[websockets.ClientConnection]]:
    """``n`` admitted TTS sessions that say nothing (each has sent its first message)."""
    sockets = []
    try:
        for _ in range(n):
            ws = await websockets.connect(url + TTS_PATH)
            await ws.send(json.dumps({"text": " "}))
            sockets.append(ws)
        yield sockets
    finally:
        for ws in sockets:
            await ws.close()


async def speak_once(url: str, text: str) -> str:
    """A plain (not reconnecting) session: ``text`` in, its audio out; what the audio voices
    (trailing whitespace aside)."""
    async with TextToSpeechStream(url, "espeak-en", output_format="pcm_16000") as tts:
        await tts.send(text)
        chunks = await tts.finish(timeout=15)
    return "".join(c.alignment.text for c in chunks if c.alignment is not None).rstrip()


async def wait_open(cluster: Cluster, expected: list[int], kind: str = "tts") -> None:
    deadline = time.monotonic() + 10
    while (found := [cluster.sessions_open(i).get(kind, 0) for i in range(2)]) != expected:
        assert time.monotonic() < deadline, f"open {kind} sessions per replica {found}, not {expected}"
        await asyncio.sleep(0.05)


def admitted(cluster: Cluster, replica: int) -> float:
    """TTS sessions ``replica`` has admitted so far."""
    return cluster.metrics(replica).get(
        ("speechwire_sessions_total", (("backend", "local"), ("kind", "tts"))), 0
    )


def refused(cluster: Cluster, replica: int) -> float:
    """Sessions ``replica`` has refused so far, for any reason."""
    return sum(
        v for (name, _), v in cluster.metrics(replica).items() if name == "speechwire_sessions_refused_total"
    )


async def test_readiness_reports_free_slots_and_sessions_spread_by_least_connections(
    healthy: Cluster,
) -> None:
    status, body = healthy.readiness(0)
    assert (status, body["status"]) == (200, "ready")
    assert body["free_slots"]["tts"] == TTS_CAP and body["free_slots"]["stt"] > 0
    async with idle_tts(healthy.url, 4):
        await wait_open(healthy, [2, 2])  # leastconn: 4 sessions, 2 on each
        for i in range(2):
            free = {
                dict(labels)["kind"]: value
                for (name, labels), value in healthy.metrics(i).items()
                if name == "speechwire_free_session_slots"
            }
            assert free["tts"] == TTS_CAP - 2 and free["server"] == 64 - 2
            assert healthy.readiness(i)[1]["free_slots"]["tts"] == TTS_CAP - 2


async def test_a_full_replica_turns_unready_and_new_sessions_go_to_the_other(healthy: Cluster) -> None:
    direct = f"ws://127.0.0.1:{healthy.replicas[0].port}"
    async with idle_tts(direct, TTS_CAP):  # past HAProxy: it counts no connection to replica 1
        status, body = healthy.readiness(0)
        assert status == 503 and body["status"] == "full" and body["free_slots"]["tts"] == 0
        healthy.wait_status(0, "DOWN", 5)
        # Without the readiness check leastconn would pick replica 1 (no connection from HAProxy)
        # and every one of these would be refused there with resource_exhausted.
        before = admitted(healthy, 1)
        voiced = await asyncio.gather(*(speak_once(healthy.url, f"Session {n} lands. ") for n in range(3)))
        assert voiced == [f"Session {n} lands." for n in range(3)]
        assert admitted(healthy, 1) - before == 3
        assert refused(healthy, 0) == 0
    healthy.wait_status(0, "UP", 10)  # a slot came back: ready again
    assert healthy.readiness(0)[0] == 200


async def test_replica_killed_under_tts_and_stt_loses_nothing(healthy: Cluster) -> None:
    """SIGKILL the replica holding the TTS stream, then the one holding the STT stream, while both
    stream through HAProxy: every character voiced exactly once, and the committed transcripts
    those of a run without kills (none lost, none repeated)."""
    utterance = next(u for u in speech_manifest() if u.path.name == "ls_1089-134686-0000.wav")
    pcm = speech(SPEECH_DIR / utterance.path.name)

    async def transcribe(kill: bool) -> tuple[Listener, Speaker]:
        listener, speaker = Listener(healthy.url), Speaker(healthy.url)
        await listener.start()
        await speaker.start()
        feeder = asyncio.create_task(listener.feed(pcm))
        for n in range(1, 7):
            await speaker.say(f"This is sentence number {n} of the failover test, spoken once. ")
            await asyncio.sleep(0.4)
            if kill and n in (2, 5):
                kind = "tts" if n == 2 else "stt"
                victim = next(i for i in range(2) if healthy.sessions_open(i).get(kind))
                healthy.kill(victim)
                await asyncio.to_thread(healthy.restart, victim)
        await feeder
        await listener.finish()
        await speaker.finish()
        return listener, speaker

    clean, _ = await transcribe(kill=False)
    faulted, speaker = await transcribe(kill=True)
    assert speaker.voiced.rstrip() == speaker.tts.sent.rstrip()  # every character once, in order
    assert speaker.connection >= 1 and faulted.connection >= 1  # both streams were cut
    reference = utterance.transcript
    assert (
        wer(reference, " ".join(faulted.committed)).rate
        <= wer(reference, " ".join(clean.committed)).rate + 0.02
    )
    assert len(faulted.committed) == len(set(faulted.committed)), faulted.committed


async def test_rolling_restart_under_steady_load_shows_no_client_an_error(healthy: Cluster) -> None:
    """SIGTERM each replica in turn and start it again, while plain (not reconnecting) short
    sessions keep arriving and a reconnecting TTS and STT stream run throughout: readiness goes
    off first, new sessions go elsewhere, the short ones finish within the drain, and the
    streams are moved with 1001 and resume (no character lost or repeated, no commit twice)."""
    errors: list[str] = []
    finished = 0
    stop = asyncio.Event()

    async def short_sessions(worker: int) -> None:
        nonlocal finished
        n = 0
        while not stop.is_set():
            n += 1
            text = f"Worker {worker} says hello number {n}."
            try:
                voiced = await speak_once(healthy.url, text + " ")
            except Exception as exc:  # a client-visible error: the finding this test is for
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)
                continue
            if voiced != text:
                errors.append(f"voiced {voiced!r}, sent {text!r}")
            finished += 1

    speaker, listener = Speaker(healthy.url), Listener(healthy.url)
    await speaker.start()
    await listener.start()
    feeder = asyncio.create_task(listener.feed(speech(SPEECH_DIR / "librivox_concat_long.wav"), stop))
    workers = [asyncio.create_task(short_sessions(w)) for w in range(2)]
    try:
        for i in range(2):
            await speaker.say(f"Replica {i + 1} is about to be restarted while this is said. ")
            proc = healthy.replicas[i].proc
            assert proc is not None
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            status, body = await asyncio.to_thread(healthy.readiness, i)  # still listening: notice
            assert (status, body["status"]) == (503, "draining")
            await asyncio.to_thread(healthy.wait_status, i, "DOWN", 5)
            await asyncio.to_thread(proc.wait, 15)
            await asyncio.to_thread(healthy.restart, i)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*workers, feeder)
    await speaker.say("Both replicas were restarted. ")
    await speaker.finish()
    await listener.finish()
    assert errors == [], f"{len(errors)} errors, {finished} sessions finished"
    assert finished >= 10
    assert speaker.voiced.rstrip() == speaker.tts.sent.rstrip()
    assert speaker.connection >= 1 and listener.connection >= 1  # both streams were moved
    assert listener.committed and len(listener.committed) == len(set(listener.committed))


async def test_a_token_minted_on_one_replica_works_once_on_any(healthy: Cluster) -> None:
    a, b = (f"127.0.0.1:{r.port}" for r in healthy.replicas)

    async def mint(host: str) -> str:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"http://{host}/v1/single-use-token/realtime_scribe")
        token: str = answer.json()["token"]
        return token

    async def first_message(base: str, token: str) -> str:
        url = f"{base}/v1/speech-to-text/realtime?token={token}"
        async with websockets.connect(url) as ws:
            return str(json.loads(await asyncio.wait_for(ws.recv(), 10))["message_type"])

    token = await mint(a)
    assert await first_message(f"ws://{b}", token) == "session_started"
    assert await first_message(healthy.url, token) == "auth_error"
    assert await first_message(f"ws://{a}", token) == "auth_error"
    token = await mint(b)  # and through the balancer, whichever replica it lands on
    assert await first_message(healthy.url, token) == "session_started"
    assert [await first_message(f"ws://{h}", token) for h in (a, b)] == ["auth_error", "auth_error"]


def test_replicas_see_the_client_address_haproxy_forwards(healthy: Cluster) -> None:
    """``option forwardfor`` writes X-Forwarded-For; a replica believes it from HAProxy's address
    (``trusted_proxies``), so a caller from 127.0.0.2 is 127.0.0.2 there, not the balancer."""
    marker = f"/v1/models?from-{time.monotonic_ns()}"  # not a probe: probes stay out of the log
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as http:
        assert http.get(healthy.http_url + marker).status_code == 200
    deadline = time.monotonic() + 5
    while not (lines := [x for r in healthy.replicas for x in read_log(r) if marker in x]):
        assert time.monotonic() < deadline, "no replica logged the request"
        time.sleep(0.05)
    assert "127.0.0.2:" in lines[0], lines


def read_log(replica: ServerProcess) -> list[str]:
    assert replica.log_to is not None
    return replica.log_to.read_text(errors="replace").splitlines()


async def test_readyz_is_open_and_says_loading_before_the_engines_are() -> None:
    """A keyed server answers /readyz without a key (a health check has none); before the
    lifespan has loaded the engines (an app served without it) it is 503 ``loading``."""
    settings = Settings(
        api_keys=["sw_balancer_key_0a1b2c3d4e5f6a7b8c9d"],
        tts_engines=["espeak"],
        stt_engines=[],
        max_sessions=5,
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/readyz")
    assert (answer.status_code, answer.json()["status"]) == (503, "loading")
    running = start_server(settings)
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{running.http_url}/readyz")
        # No STT engine loaded: only TTS and the server-wide cap count.
        assert answer.status_code == 200
        assert answer.json() == {"status": "ready", "free_slots": {"tts": 5, "server": 5}}
    finally:
        running.stop()


async def test_bench_failover_one_round(healthy: Cluster) -> None:
    """``speechwire bench failover``'s measure, one kill: it resumes and measures a time."""
    pcm = speech(SPEECH_DIR / "ls_1089-134691-0001.wav")
    report = await failover(healthy, 1, pcm, budget_s=60)
    assert report.kills == 1 and report.exactly_once
    assert len(report.tts_resume_s) == 1 and 0 < report.tts_resume_s[0] < 10
