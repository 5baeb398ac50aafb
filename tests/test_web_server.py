"""Server side of the browser parts, without a browser: the page and modules are served, single-use
tokens behave, and a MediaRecorder-style WebM/Opus stream is transcribed as it arrives."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import websockets

from speechwire.audio.stream_decoder import StreamingDecoder
from speechwire.audio.wav import read_audio_file
from speechwire.bench.wer import wer
from speechwire.protocol.stt import EncodedAudioIn, RealtimeParams, STTServerSession
from speechwire.server.access.tokens import MemoryTokenStore
from speechwire.server.ops.runner import RunningServer
from tests.conftest import SPEECH_DIR, speech_manifest

WEB_MODULES = (
    "speechwire.js",
    "connection.js",
    "wire.js",
    "player.js",
    "player-worklet.js",
    "tts.js",
    "mic.js",
    "capture-worklet.js",
    "transcript.js",
    "status.js",
    "latency.js",
    "app.js",
    "style.css",
)


def webm_opus(path: Path) -> bytes:
    """A file encoded the way Chromium's MediaRecorder does: WebM, Opus, 48 kHz mono."""
    pcm, rate = read_audio_file(path)
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for piece in resampler.resample(frame):
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


async def test_page_and_modules_are_served(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "/web/app.js" in page.text
        for name in WEB_MODULES:
            response = await http.get(f"/web/{name}")
            assert response.status_code == 200, name
            kind = "text/css" if name.endswith(".css") else "javascript"
            assert kind in response.headers["content-type"], (name, response.headers["content-type"])
        assert (await http.get("/web/nope.js")).status_code == 404


async def test_tokens_work_once_and_expire() -> None:
    now = [1000.0]
    store = MemoryTokenStore(ttl_s=60, clock=lambda: now[0])
    token = await store.mint("realtime_scribe", "key:abc")
    assert await store.consume(token, "tts_websocket") is None  # wrong kind: refused, still unused
    assert await store.consume(token, "realtime_scribe") == "key:abc"  # the owner comes back
    assert await store.consume(token, "realtime_scribe") is None  # single use
    late = await store.mint("tts_websocket")
    now[0] += 61
    assert await store.consume(late, "tts_websocket") is None  # expired
    assert await store.consume("sw_made_up", "tts_websocket") is None
    await store.mint("tts_websocket")
    assert len(store) == 1  # expired ones are swept


async def test_tts_socket_refuses_a_used_token(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        token = (await http.post("/v1/single-use-token/tts_websocket")).json()["token"]
    query = f"output_format=pcm_16000&single_use_token={token}"
    url = f"{server.ws_url}/v1/text-to-speech/joe/stream-input?{query}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"text": " "}))
        await ws.send(json.dumps({"text": "Hi there. ", "flush": True}))
        first = json.loads(await ws.recv())
        assert first.get("audio")
    async with websockets.connect(url) as ws:
        error = json.loads(await ws.recv())
        assert error["error"] == "invalid_api_key" and error["code"] == 1008
        await ws.wait_closed()
        assert ws.close_code == 1008


def test_webm_stream_decodes_as_it_arrives() -> None:
    data = webm_opus(SPEECH_DIR / "jfk.wav")
    pieces: list[np.ndarray] = []
    errors: list[Exception] = []
    decoder = StreamingDecoder("webm", 16000, pieces.append, errors.append)
    step = len(data) // 20
    decoded_midway = 0
    for i, start in enumerate(range(0, len(data), step)):
        decoder.feed(data[start : start + step])
        if i == 10:
            assert decoder.wait_decoded(5.0)
            decoded_midway = sum(len(p) for p in pieces)
    decoder.close()
    total = sum(len(p) for p in pieces)
    assert errors == []
    assert 0.4 * total < decoded_midway < 0.7 * total  # decoding kept up with the bytes
    assert abs(total / 16000 - 11.0) < 0.1


def test_protocol_passes_webm_bytes_through() -> None:
    params = RealtimeParams.from_query([("audio_format", "webm_opus")])
    session = STTServerSession(params)
    chunk = b"\x1aE\xdf\xa3 not decoded here"
    events = session.receive(
        json.dumps({"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(chunk).decode()})
    )
    assert events == [EncodedAudioIn(chunk)]
    assert params.config_json()["audio_format"] == "webm_opus"


@pytest.mark.parametrize("name", ["lj_LJ001-0003.wav"])
async def test_webm_opus_realtime_session_transcribes(server: RunningServer, name: str) -> None:
    utterance = next(u for u in speech_manifest() if u.path.name == name)
    data = webm_opus(utterance.path)
    url = f"{server.ws_url}/v1/speech-to-text/realtime?audio_format=webm_opus&commit_strategy=manual"
    committed: list[str] = []
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
        step = len(data) // 40
        for start in range(0, len(data), step):
            chunk = base64.b64encode(data[start : start + step]).decode()
            await ws.send(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": chunk}))
            await asyncio.sleep(utterance.duration_s / 40 / 4)  # 4× real time
        await ws.send(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if message["message_type"] == "committed_transcript":
                committed.append(message["text"])
                break
    assert wer(utterance.transcript, " ".join(committed)).rate <= 0.15, committed


async def test_broken_webm_gets_an_input_error(server: RunningServer) -> None:
    url = f"{server.ws_url}/v1/speech-to-text/realtime?audio_format=webm_opus"
    garbage = base64.b64encode(b"this is not a webm stream at all" * 200).decode()
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
        error = None
        for _ in range(50):
            try:
                await ws.send(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": garbage}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                break
            if reply["message_type"] == "input_error":
                error = reply
                break
        assert error is not None and "webm_opus" in error["error"]
