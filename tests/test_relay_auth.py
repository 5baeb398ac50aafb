"""Relay to the cloud with a server-held key, authentication, tokens, origins and rate limits.

The ElevenLabs cloud is out of reach, so the upstream is a second speechwire server with API
keys of its own; the relay's base URL points at it. The client is the official SDK.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trustme
import websockets
from elevenlabs.client import ElevenLabs

from speechwire.audio.codecs import decode_to_pcm
from speechwire.audio.formats import AudioFormat
from speechwire.audio.resample import resample
from speechwire.audio.wav import read_wav
from speechwire.bench.wer import wer
from speechwire.client.stt import paced_chunks
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server
from tests.conftest import speech_manifest, tls_files

UPSTREAM_KEY = "sk_upstream_9f3b2c1d7e6a5b4c3d2e1f0a"
RELAY_KEY = "sw_relay_key_4d5e6f7a8b9c0d1e2f3a"
OTHER_KEY = "sw_other_key_0a1b2c3d4e5f6a7b8c9d"
TEXT = "The weather today will be sunny with a high of seventy degrees."


class Captured(logging.Handler):
    """Every log line any logger writes while the relay tests run, formatted as a handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    names = ("uvicorn", "uvicorn.access", "uvicorn.error", "speechwire", "websockets", "httpx")
    levels = {n: logging.getLogger(n).level for n in names}
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _debug_everything() -> None:
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "speechwire", "websockets", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = True


@pytest.fixture(scope="module")
def upstream(logs: Captured) -> Iterator[RunningServer]:
    """The stand-in for the cloud: a speechwire server that only takes UPSTREAM_KEY."""
    running = start_server(
        Settings(tts_engines=["piper"], stt_engines=["moonshine"], api_keys=[UPSTREAM_KEY])
    )
    _debug_everything()
    yield running
    running.stop()


def _relay_settings(upstream: RunningServer, key: str, **extra: object) -> Settings:
    return Settings(
        tts_engines=["espeak"],
        stt_engines=["moonshine"],
        api_keys=[RELAY_KEY, OTHER_KEY],
        elevenlabs_api_key=key,
        elevenlabs_base_url=upstream.http_url,
        tts_backend="elevenlabs",
        stt_backend="elevenlabs",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def relay(
    upstream: RunningServer, ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    certfile, keyfile = tls_files(ca, tmp_path_factory.mktemp("relay-tls"))
    running = start_server(
        _relay_settings(upstream, UPSTREAM_KEY), ssl_certfile=certfile, ssl_keyfile=keyfile
    )
    _debug_everything()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bad_relay(upstream: RunningServer) -> Iterator[RunningServer]:
    """A relay whose cloud key is wrong."""
    running = start_server(_relay_settings(upstream, "sk_wrong_key_for_upstream_000000"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def guarded(logs: Captured) -> Iterator[RunningServer]:
    """A local server with keys, a tight per-key rate limit, short-lived tokens and an origin list."""
    running = start_server(
        Settings(
            tts_engines=["espeak"],
            stt_engines=["moonshine"],
            api_keys=[RELAY_KEY, OTHER_KEY],
            allowed_origins=["https://app.example"],
            token_ttl_s=1.0,
        )
    )
    _debug_everything()
    yield running
    running.stop()


@pytest.fixture
def limited() -> Iterator[RunningServer]:
    """Keys with a tight budget: bursts of 3 sessions, then 6 a minute."""
    running = start_server(
        Settings(
            tts_engines=["espeak"],
            stt_engines=["moonshine"],
            api_keys=[RELAY_KEY, OTHER_KEY],
            rate_sessions_per_minute=6,
            rate_burst=3,
        )
    )
    yield running
    running.stop()


def _sdk(server: RunningServer, ca: trustme.CA, key: str = RELAY_KEY) -> ElevenLabs:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return ElevenLabs(
        api_key=key, base_url=server.http_url, httpx_client=httpx.Client(verify=context, timeout=60)
    )


def _heard(audio: bytes, whisper: object) -> str:
    pcm, rate = decode_to_pcm(audio, AudioFormat.parse("mp3_44100_128"))
    return str(whisper.transcribe(resample(np.asarray(pcm, np.int16), rate, 16000)).text)  # type: ignore[attr-defined]


# --- 1. through the relay, with the SDK ---------------------------------------------------------


def test_sdk_tts_websocket_through_the_relay(
    relay: RunningServer, ca: trustme.CA, trusted: Path, whisper: object
) -> None:
    client = _sdk(relay, ca)
    audio = b"".join(
        client.text_to_speech.convert_realtime(
            voice_id="joe", text=iter(w + " " for w in TEXT.split()), model_id="eleven_flash_v2_5"
        )
    )
    heard = _heard(audio, whisper)
    assert wer(TEXT, heard).rate <= 0.1, heard


def test_sdk_http_stream_through_the_relay(relay: RunningServer, ca: trustme.CA, whisper: object) -> None:
    client = _sdk(relay, ca)
    audio = b"".join(
        client.text_to_speech.stream(voice_id="joe", text=TEXT, model_id="eleven_multilingual_v2")
    )
    heard = _heard(audio, whisper)
    assert wer(TEXT, heard).rate <= 0.1, heard


async def _sdk_stt(
    server: RunningServer, ca: trustme.CA, name: str
) -> tuple[list[str], list[dict[str, str]]]:
    from elevenlabs.realtime import AudioFormat as SdkFormat
    from elevenlabs.realtime import CommitStrategy, RealtimeEvents

    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = ElevenLabs(api_key=RELAY_KEY, base_url=server.http_url)
    utterance = next(u for u in speech_manifest() if u.path.name == name)
    pcm, _ = read_wav(utterance.path)
    committed: list[str] = []
    errors: list[dict[str, str]] = []
    connection = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": SdkFormat.PCM_16000,
            "sample_rate": 16000,
            "commit_strategy": CommitStrategy.VAD,
            "vad_silence_threshold_secs": 0.5,
        }
    )
    connection.on(RealtimeEvents.COMMITTED_TRANSCRIPT, lambda data: committed.append(data["text"]))
    connection.on(RealtimeEvents.ERROR, lambda data: errors.append(data))
    connection.on(RealtimeEvents.AUTH_ERROR, lambda data: errors.append(data))
    try:
        async for piece in paced_chunks(np.concatenate([pcm, np.zeros(16000, np.int16)]), 16000, 250):
            await connection.send({"audio_base_64": base64.b64encode(piece.tobytes()).decode()})
            if errors:
                break
        for _ in range(50):
            if committed or errors:
                break
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    return committed, errors


async def test_sdk_realtime_stt_through_the_relay(
    relay: RunningServer, ca: trustme.CA, trusted: Path
) -> None:
    committed, errors = await _sdk_stt(relay, ca, "librivox_0870.wav")
    reference = next(u for u in speech_manifest() if u.path.name == "librivox_0870.wav").transcript
    assert errors == []
    assert wer(reference, " ".join(committed)).rate <= 0.15, committed


def test_upstream_bad_key_reaches_the_tts_client_as_the_servers_failure(bad_relay: RunningServer) -> None:
    """The cloud refusing the *server's* key is a server error (1011), not ``invalid_api_key``:
    the client's own key was accepted (issue 14)."""

    async def run() -> tuple[dict[str, object], int | None]:
        url = f"{bad_relay.ws_url}/v1/text-to-speech/joe/stream-input?model_id=eleven_flash_v2_5"
        async with websockets.connect(url, additional_headers={"xi-api-key": RELAY_KEY}) as ws:
            await ws.send(json.dumps({"text": " "}))
            frame = json.loads(await ws.recv())
            await ws.wait_closed()
            return frame, ws.close_code

    frame, code = asyncio.run(run())
    assert frame["error"] == "upstream_error" and code == 1011, frame
    assert "server's own credential" in str(frame["message"]) and "ELEVENLABS_API_KEY" in str(
        frame["message"]
    )


async def test_upstream_bad_key_reaches_the_stt_client(bad_relay: RunningServer) -> None:
    url = f"{bad_relay.ws_url}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime"
    async with websockets.connect(url, additional_headers={"xi-api-key": RELAY_KEY}) as ws:
        frame = json.loads(await ws.recv())
        await ws.wait_closed()
    assert frame["message_type"] == "error" and ws.close_code == 1011, frame
    assert "server's own credential" in frame["error"]


def test_upstream_bad_key_reaches_the_http_client(bad_relay: RunningServer) -> None:
    response = httpx.post(
        f"{bad_relay.http_url}/v1/text-to-speech/joe/stream",
        json={"text": TEXT},
        headers={"xi-api-key": RELAY_KEY},
    )
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert detail["status"] == "upstream_error" and "server's own credential" in detail["message"]


# --- 2. keys, tokens, origins, rate limits ------------------------------------------------------


async def _first_frame(
    url: str, headers: dict[str, str] | None = None, send: str | None = None
) -> tuple[dict[str, object], int | None]:
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        if send is not None:
            with contextlib.suppress(websockets.ConnectionClosed):  # refused before reading it
                await ws.send(send)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if "audio" not in frame and frame.get("message_type") != "session_started":
            await ws.wait_closed()
        return frame, ws.close_code


async def test_no_connection_without_a_valid_key_or_token(guarded: RunningServer) -> None:
    tts = f"{guarded.ws_url}/v1/text-to-speech/espeak-en/stream-input"
    stt = f"{guarded.ws_url}/v1/speech-to-text/realtime"
    frame, code = await _first_frame(tts, send=json.dumps({"text": " "}))
    assert frame["error"] == "authentication_required" and code == 1008
    frame, code = await _first_frame(tts, {"xi-api-key": "sw_not_a_key"}, json.dumps({"text": " "}))
    assert frame["error"] == "invalid_api_key" and code == 1008
    frame, code = await _first_frame(stt)
    assert frame["message_type"] == "auth_error" and code == 1008
    # Each accepted way: header, bearer, the key in the first TTS message.
    frame, _ = await _first_frame(stt, {"xi-api-key": RELAY_KEY})
    assert frame["message_type"] == "session_started"
    frame, _ = await _first_frame(stt, {"authorization": f"Bearer {OTHER_KEY}"})
    assert frame["message_type"] == "session_started"
    first = json.dumps({"text": " ", "xi_api_key": RELAY_KEY})
    async with websockets.connect(tts) as ws:
        await ws.send(first)
        await ws.send(json.dumps({"text": "Hello there. ", "flush": True}))
        assert json.loads(await ws.recv()).get("audio")
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        assert (
            await http.post("/v1/text-to-speech/espeak-en/stream", json={"text": "hi"})
        ).status_code == 401
        assert (await http.post("/v1/single-use-token/tts_websocket")).status_code == 401
        assert (await http.get("/v1/voices")).status_code == 401
        ok = await http.post(
            "/v1/text-to-speech/espeak-en/stream", json={"text": "hi"}, headers={"xi-api-key": RELAY_KEY}
        )
        assert ok.status_code == 200 and len(ok.content) > 1000
        assert (await http.get("/healthz")).status_code == 200  # liveness stays open


async def test_a_token_works_once_and_expires(guarded: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, headers={"xi-api-key": RELAY_KEY}) as http:
        token = (await http.post("/v1/single-use-token/realtime_scribe")).json()["token"]
        stale = (await http.post("/v1/single-use-token/realtime_scribe")).json()["token"]
    url = f"{guarded.ws_url}/v1/speech-to-text/realtime?token="
    frame, _ = await _first_frame(url + token)
    assert frame["message_type"] == "session_started"
    frame, code = await _first_frame(url + token)
    assert frame["message_type"] == "auth_error" and code == 1008  # used
    await asyncio.sleep(1.2)
    frame, code = await _first_frame(url + stale)
    assert frame["message_type"] == "auth_error" and code == 1008  # expired (ttl 1 s here)


async def test_a_bad_origin_is_refused(guarded: RunningServer) -> None:
    url = f"{guarded.ws_url}/v1/speech-to-text/realtime"
    key = {"xi-api-key": RELAY_KEY}
    frame, code = await _first_frame(url, {**key, "origin": "https://evil.example"})
    assert frame["message_type"] == "auth_error" and "origin" in str(frame["error"]).lower() and code == 1008
    frame, _ = await _first_frame(url, {**key, "origin": "https://app.example"})
    assert frame["message_type"] == "session_started"


async def test_a_flood_from_one_key_is_limited_while_another_is_served(limited: RunningServer) -> None:
    url = f"{limited.ws_url}/v1/speech-to-text/realtime"
    refused = 0
    for _ in range(8):
        frame, code = await _first_frame(url, {"xi-api-key": RELAY_KEY})
        if frame["message_type"] == "rate_limited":
            refused += 1
            assert code == 1013
    assert refused >= 4  # a burst of 3, then about 1 every 10 s
    frame, _ = await _first_frame(url, {"xi-api-key": OTHER_KEY})
    assert frame["message_type"] == "session_started"


# --- 3. the key never leaks ---------------------------------------------------------------------


async def test_keys_never_appear_in_responses_pages_or_logs(
    relay: RunningServer, logs: Captured, ca: trustme.CA
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    seen: list[str] = []
    async with httpx.AsyncClient(
        base_url=relay.http_url, verify=context, headers={"xi-api-key": RELAY_KEY}
    ) as http:
        for path in (
            "/",
            "/web/app.js",
            "/web/connection.js",
            "/v1/voices",
            "/v1/models",
            "/healthz",
            "/openapi.json",
        ):
            seen.append((await http.get(path)).text)
        token = (await http.post("/v1/single-use-token/tts_websocket")).json()["token"]
        response = await http.post("/v1/text-to-speech/joe/stream/with-timestamps", json={"text": "Hi."})
        seen.append(response.text)
    url = f"{relay.ws_url}/v1/text-to-speech/joe/stream-input?single_use_token={token}"
    async with websockets.connect(url, ssl=context) as ws:
        await ws.send(json.dumps({"text": " ", "xi_api_key": RELAY_KEY}))
        await ws.send(json.dumps({"text": "Hello. ", "flush": True}))
        await ws.send(json.dumps({"text": ""}))
        async for frame in ws:
            seen.append(str(frame))
    lines = "\n".join(logs.lines)
    assert "uvicorn.access" in lines or "speechwire" in lines  # logging was really captured
    for secret in (UPSTREAM_KEY, RELAY_KEY, OTHER_KEY, token):
        assert all(secret not in text for text in seen), secret
        assert secret not in lines, secret


async def test_sessions_end_at_the_time_limit_and_page_tokens_need_an_allowed_origin() -> None:
    running = start_server(
        Settings(
            tts_engines=["espeak"],
            stt_engines=["moonshine"],
            api_keys=[RELAY_KEY],
            max_session_s=1.0,
            page_tokens=True,
            allowed_origins=["https://app.example"],
        )
    )
    try:
        url = f"{running.ws_url}/v1/speech-to-text/realtime"
        async with websockets.connect(url, additional_headers={"xi-api-key": RELAY_KEY}) as ws:
            assert json.loads(await ws.recv())["message_type"] == "session_started"
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.wait_closed()
        assert frame["message_type"] == "session_time_limit_exceeded" and ws.close_code == 1008
        async with httpx.AsyncClient(base_url=running.http_url) as http:
            mint = "/v1/single-use-token/realtime_scribe"
            assert (await http.post(mint)).status_code == 401  # no key, no Origin: a program
            page = await http.post(mint, headers={"origin": "https://app.example"})
            assert (
                page.status_code == 200
                and page.headers["access-control-allow-origin"] == "https://app.example"
            )
            assert (await http.post(mint, headers={"origin": "https://evil.example"})).status_code == 403
        frame, _ = await _first_frame(f"{url}?token={page.json()['token']}")
        assert frame["message_type"] == "session_started"
    finally:
        running.stop()


def test_cli_say_with_a_key(tmp_path: Path) -> None:
    """The command-line client speaks to a keyed server with --api-key; without it, it is refused."""
    import subprocess
    import sys

    running = start_server(Settings(tts_engines=["espeak"], stt_engines=[], api_keys=[RELAY_KEY]))
    try:
        base = [sys.executable, "-m", "speechwire.cli", "say", "Keyed hello.", "--url", running.ws_url]
        base += ["--voice", "espeak-en", "--out", str(tmp_path / "out.wav")]
        ok = subprocess.run([*base, "--api-key", RELAY_KEY], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert (tmp_path / "out.wav").stat().st_size > 10_000
        refused = subprocess.run(base, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
        assert refused.returncode != 0 and RELAY_KEY not in refused.stdout + refused.stderr
    finally:
        running.stop()
