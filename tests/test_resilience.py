"""Keep-alive, server restarts, clients that never read, admission control, give-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from speechwire.client.errors import ConnectionClosedError, InputTimeoutExceeded
from speechwire.client.latency import percentile
from speechwire.client.reconnect import ConnectionState, GiveUpPolicy, StateChange, backoff
from speechwire.client.resumable import ResumableTextToSpeech
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server
from speechwire.testing.serverprocess import ServerProcess, free_port

TEXT = "Your package was delivered to the front door this morning. I have added milk to your list. "


@pytest.fixture
def process_server() -> Iterator[ServerProcess]:
    server = ServerProcess(free_port())
    server.start()
    yield server
    server.kill()


def test_backoff_has_full_jitter_and_a_cap() -> None:
    import random

    delays = list(zip(range(12), backoff(0.1, 2.0, rng=random.Random(3)), strict=False))
    assert all(0 <= d <= 2.0 for _, d in delays)
    assert len({round(d, 6) for _, d in delays}) == len(delays)  # jittered, not lock-step


def test_give_up_counts_only_quick_connections_without_progress() -> None:
    policy = GiveUpPolicy(quick_failures=3, quick_window_s=5)
    for _ in range(5):
        policy.connection_ended(0.5, progressed=True)
    assert not policy.give_up
    for _ in range(3):
        policy.connection_ended(0.5, progressed=False)
    assert policy.give_up


async def test_keepalive_keeps_an_idle_session_usable(server: RunningServer) -> None:
    """Idle for 3 × inactivity_timeout: kept alive it still speaks; left alone it times out."""
    async with ResumableTextToSpeech(
        server.ws_url, "espeak-en", inactivity_timeout=1, keepalive_s=0.3
    ) as tts:
        await asyncio.sleep(3.2)
        await tts.send("Still here. ", flush=True)
        await tts.end()
        audio = [c async for c in tts]
        assert tts.link.reconnects == 0
    assert "".join(c.alignment.text for c in audio if c.alignment).strip() == "Still here."

    with pytest.raises(InputTimeoutExceeded):
        async with ResumableTextToSpeech(server.ws_url, "espeak-en", inactivity_timeout=1) as tts:
            await asyncio.sleep(3.2)
            async for _ in tts:
                pass


async def test_server_killed_and_restarted_mid_session(process_server: ServerProcess) -> None:
    """The client reconnects when the server is back and finishes: nothing lost, nothing twice."""
    states: list[StateChange] = []
    url = f"ws://127.0.0.1:{process_server.port}"
    tts = ResumableTextToSpeech(
        url,
        "espeak-en",
        output_format="pcm_16000",
        on_state=states.append,
        give_up=GiveUpPolicy(max_attempts=200),
        ping_interval=0.5,
        ping_timeout=0.5,
    )
    await tts.connect()
    sentences = [f"This is sentence number {n} of the restart test. " for n in range(1, 7)]
    chunks = []

    async def feed() -> None:
        for i, sentence in enumerate(sentences):
            await tts.send(sentence, flush=True)
            await asyncio.sleep(0.3)
            if i in (1, 3):
                process_server.kill()
                await asyncio.sleep(0.5)
                await asyncio.to_thread(process_server.start)
        await tts.end()

    feeder = asyncio.create_task(feed())
    async for chunk in tts:
        chunks.append(chunk)
    await feeder
    voiced = "".join(c.alignment.text for c in chunks if c.alignment)
    assert voiced.strip() == "".join(sentences).strip()
    assert tts.link.reconnects >= 2
    assert [s.state for s in states].count(ConnectionState.RECONNECTING) >= 2
    times = tts.link.reconnect_times
    print(
        f"reconnect after restart: p50 {1000 * percentile(times, 50):.0f} ms, "
        f"max {1000 * max(times):.0f} ms over {len(times)}"
    )


async def test_client_that_never_reads_cannot_grow_server_memory() -> None:
    server = ServerProcess(free_port(), SPEECHWIRE_SEND_TIMEOUT_S="3", SPEECHWIRE_MAX_BUFFER_CHARS="20000")
    server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/v1/text-to-speech/espeak-en/stream-input?output_format=pcm_48000"
        baseline = server.rss_kib()
        ws = await websockets.connect(url, max_size=2**24)
        ws.transport.pause_reading()  # never read: the server's sends back up
        await ws.send(json.dumps({"text": " "}))
        peak = baseline
        sentence = "A client that never reads must not make the server hold its audio forever. "
        for _ in range(400):  # about 30 minutes of 48 kHz audio asked for
            try:
                await ws.send(json.dumps({"text": sentence, "flush": True}))
            except websockets.ConnectionClosed:
                break
            await asyncio.sleep(0.005)
            peak = max(peak, server.rss_kib())
        for _ in range(40):
            peak = max(peak, server.rss_kib())
            await asyncio.sleep(0.1)
        ws.transport.abort()
        growth_mib = (peak - baseline) / 1024
        print(f"server RSS {baseline / 1024:.0f} MiB before, peak growth {growth_mib:.1f} MiB")
        assert growth_mib < 40, f"server grew {growth_mib:.1f} MiB for a client that never reads"
        # The server is still healthy for everyone else.
        async with websockets.connect(url.replace("pcm_48000", "pcm_16000")) as other:
            await other.send(json.dumps({"text": " "}))
            await other.send(json.dumps({"text": "Hello. ", "flush": True}))
            await other.send(json.dumps({"text": ""}))
            assert "audio" in json.loads(await asyncio.wait_for(other.recv(), 10))
    finally:
        server.kill()


async def test_admission_control_refuses_past_the_limit() -> None:
    running = start_server(
        Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"], max_sessions=2)
    )
    try:
        url = f"{running.ws_url}/v1/text-to-speech/espeak-en/stream-input"
        a = await websockets.connect(url)
        b = await websockets.connect(url)
        async with websockets.connect(url) as c:
            frame = json.loads(await asyncio.wait_for(c.recv(), 5))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(c.recv(), 5)
            assert frame["error"] == "resource_exhausted"
            assert c.close_code == 1013
        await a.close()
        await asyncio.sleep(0.2)
        async with websockets.connect(url) as d:  # a place is free again
            await d.send(json.dumps({"text": " "}))
            await d.send(json.dumps({"text": "Hi. ", "flush": True}))
            assert "audio" in json.loads(await asyncio.wait_for(d.recv(), 10))
        await b.close()
    finally:
        running.stop()


async def test_engine_admission_is_per_kind() -> None:
    """STT at its engines' real-time capacity refuses the next STT session; TTS still gets in."""
    running = start_server(
        Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"], max_stt_sessions=1)
    )
    try:
        stt = f"{running.ws_url}/v1/speech-to-text/realtime"
        async with websockets.connect(stt) as first:
            assert json.loads(await first.recv())["message_type"] == "session_started"
            async with websockets.connect(stt) as second:
                frame = json.loads(await asyncio.wait_for(second.recv(), 5))
                await second.wait_closed()
            assert frame["message_type"] == "resource_exhausted" and second.close_code == 1013
            tts = f"{running.ws_url}/v1/text-to-speech/espeak-en/stream-input"
            async with websockets.connect(tts) as speaker:
                await speaker.send(json.dumps({"text": " "}))
                await speaker.send(json.dumps({"text": "Still here. ", "flush": True}))
                assert "audio" in json.loads(await asyncio.wait_for(speaker.recv(), 10))
    finally:
        running.stop()


async def test_client_gives_up_on_a_server_that_is_gone() -> None:
    port = free_port()  # nothing listens here
    states: list[StateChange] = []
    tts = ResumableTextToSpeech(
        f"ws://127.0.0.1:{port}", give_up=GiveUpPolicy(max_attempts=4), on_state=states.append
    )
    with pytest.raises(ConnectionClosedError):
        await tts.connect()
    assert states[-1].state is ConnectionState.FAILED
    assert any(s.retry_in_s is not None for s in states)  # the UI can show a countdown


async def test_sigterm_drains_then_closes_with_1001(tmp_path: Path) -> None:
    """SIGTERM: no new sessions; a session that finishes within the drain deadline finishes;
    one still open at the deadline is closed with 1001. The log says what the drain waits for
    and how it ended (a silent 10 s after Ctrl-C looks like a hang)."""
    log = tmp_path / "server.log"
    server = ServerProcess(free_port(), SPEECHWIRE_DRAIN_S="3", log_to=log)
    server.start()
    url = f"ws://127.0.0.1:{server.port}/v1/text-to-speech/espeak-en/stream-input?output_format=pcm_16000"
    try:
        busy = await websockets.connect(url)
        idle = await websockets.connect(url)
        await busy.send(json.dumps({"text": " "}))
        await idle.send(json.dumps({"text": " "}))
        await asyncio.sleep(0.2)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        with pytest.raises(OSError):
            await websockets.connect(url, open_timeout=2)  # no longer accepting
        # The busy session still works during the drain and ends normally.
        await busy.send(json.dumps({"text": "Finishing my sentence during the drain. ", "flush": True}))
        await busy.send(json.dumps({"text": ""}))
        frames = []
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frames.append(json.loads(await asyncio.wait_for(busy.recv(), 5)))
        assert frames[-1] == {"isFinal": True} and busy.close_code == 1000
        # The idle one is closed with 1001 once the deadline passes.
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(idle.recv(), 10)
        assert idle.close_code == 1001
        assert server.proc.wait(10) is not None
        text = log.read_text()
        assert "draining: waiting up to 3 s for 2 open session(s) (2 /v1/text-to-speech/" in text
        assert "drained: 1 session(s) finished, 1 closed with 1001" in text
    finally:
        server.kill()


async def test_graceful_finish_waits_for_final_audio_and_commit(server: RunningServer) -> None:
    async with ResumableTextToSpeech(server.ws_url, "espeak-en") as tts:
        await tts.send(TEXT)
        chunks = await tts.finish(timeout=10)
    assert "".join(c.alignment.text for c in chunks if c.alignment).strip() == TEXT.strip()

    from speechwire.audio.wav import read_wav
    from speechwire.bench.wer import wer
    from speechwire.client.stt import RealtimeTranscriber

    from .conftest import speech_manifest

    utterance = next(u for u in speech_manifest() if u.path.name == "ls_1089-134691-0001.wav")
    pcm, _ = read_wav(utterance.path)
    async with RealtimeTranscriber(server.ws_url, commit_strategy="manual") as stt:
        for i in range(0, len(pcm), 4000):
            await stt.send_audio(pcm[i : i + 4000])
        committed = await stt.finish(timeout=10)
    assert committed is not None
    assert wer(utterance.transcript, committed.text).rate <= 0.15


def test_probe_requests_stay_out_of_the_access_log(tmp_path: Path) -> None:
    """A balancer's /readyz every 500 ms would drown the access log: probes are left out, every
    other request is still logged."""
    log = tmp_path / "server.log"
    server = ServerProcess(free_port(), log_to=log)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/readyz", "/healthz", "/readyz?x=1", "/v1/models"):
            httpx.get(base + path, timeout=10)
    finally:
        server.stop()
    text = log.read_text(errors="replace")
    assert '"GET /v1/models HTTP/1.1" 200' in text, text[-2000:]
    assert "/readyz" not in text and "/healthz" not in text, text[-2000:]
