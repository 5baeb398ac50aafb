"""The real server over loopback: stream-input, HTTP streaming, catalog, bad input, the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from speechwire.audio.codecs import decode_to_pcm
from speechwire.audio.formats import TTS_OUTPUT_FORMATS, AudioFormat
from speechwire.client.errors import InputTimeoutExceeded, VoiceNotFound
from speechwire.client.tts import TextToSpeechStream
from speechwire.server.ops.runner import RunningServer

TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April. "


def ws_url(server: RunningServer, voice: str = "joe", **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/v1/text-to-speech/{voice}/stream-input" + (f"?{qs}" if qs else "")


async def collect(
    url: str, frames: list[Any], *, read_timeout: float = 30
) -> tuple[list[dict[str, Any]], int | None]:
    """Send raw frames, then read until the server closes; returns (messages, close code)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=2**24) as ws:
        for frame in frames:
            try:
                await ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
            except websockets.ConnectionClosed:
                break
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), read_timeout)
                messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        return messages, ws.close_code


async def speak(
    server: RunningServer, text: str, voice: str = "joe", fmt: str = "pcm_22050"
) -> tuple[bytes, str]:
    """A whole healthy session through the client; returns (audio, voiced text)."""
    async with TextToSpeechStream(server.ws_url, voice, output_format=fmt) as tts:
        await tts.send(text, flush=True)
        await tts.end()
        audio = b"".join([chunk.audio async for chunk in tts])
        return audio, tts.voiced_text


async def test_stream_input_round_trip_with_alignment(server: RunningServer) -> None:
    messages, code = await collect(
        ws_url(server, output_format="pcm_22050"),
        [{"text": " "}, {"text": TEXT, "flush": True}, {"text": ""}],
    )
    assert code == 1000
    assert messages[-1] == {"isFinal": True}
    audio_msgs = messages[:-1]
    assert len(audio_msgs) >= 2  # a quick first phrase, then the rest
    voiced = "".join("".join(m["alignment"]["chars"]) for m in audio_msgs)
    assert voiced == TEXT
    for m in audio_msgs:
        a = m["alignment"]
        assert len(a["chars"]) == len(a["charStartTimesMs"]) == len(a["charDurationsMs"])
        assert a["charStartTimesMs"] == sorted(a["charStartTimesMs"])
        assert m["normalizedAlignment"]["chars"] == a["chars"]
    pcm = np.frombuffer(b"".join(__import__("base64").b64decode(m["audio"]) for m in audio_msgs), np.int16)
    assert 3.0 < len(pcm) / 22050 < 9.0
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 500


async def test_alignment_times_fall_inside_each_chunk(server: RunningServer) -> None:
    messages, _ = await collect(
        ws_url(server, output_format="pcm_22050"),
        [{"text": " "}, {"text": TEXT, "flush": True}, {"text": ""}],
    )
    import base64

    for m in messages[:-1]:
        chunk_ms = 1000 * len(base64.b64decode(m["audio"])) / 2 / 22050
        ends = [
            s + d
            for s, d in zip(
                m["alignment"]["charStartTimesMs"], m["alignment"]["charDurationsMs"], strict=True
            )
        ]
        assert max(ends) <= chunk_ms + 5


@pytest.mark.parametrize("fmt", TTS_OUTPUT_FORMATS)
async def test_every_output_format(server: RunningServer, fmt: str) -> None:
    audio, voiced = await speak(
        server, "Testing every output format we can produce. ", voice="espeak-en", fmt=fmt
    )
    pcm, rate = decode_to_pcm(audio, AudioFormat.parse(fmt))
    assert rate == AudioFormat.parse(fmt).sample_rate
    assert 1.0 < len(pcm) / rate < 6.0
    assert voiced.strip() == "Testing every output format we can produce."


async def test_client_records_time_to_first_audio(server: RunningServer) -> None:
    async with TextToSpeechStream(server.ws_url, "joe") as tts:
        await tts.send("Hello there, how are you today? ", flush=True)
        await tts.end()
        chunks = [c async for c in tts]
    assert chunks
    ttfa = tts.latency.time_to_first_audio
    assert ttfa is not None and 0 < ttfa < 5


async def test_speed_setting_changes_duration(server: RunningServer) -> None:
    durations = {}
    for speed in (0.8, 1.2):
        async with TextToSpeechStream(server.ws_url, "joe", voice_settings={"speed": speed}) as tts:
            await tts.send(TEXT, flush=True)
            await tts.end()
            audio = b"".join([c.audio async for c in tts])
        durations[speed] = len(audio) / 2 / 22050
    assert durations[0.8] > durations[1.2] * 1.2


async def test_inactivity_timeout_sends_protocol_error(server: RunningServer) -> None:
    messages, code = await collect(ws_url(server, inactivity_timeout="1"), [{"text": " "}], read_timeout=10)
    assert code == 1008
    assert messages[-1]["error"] == "input_timeout_exceeded"
    assert messages[-1]["code"] == 1008


async def test_client_raises_typed_errors(server: RunningServer) -> None:
    with pytest.raises(VoiceNotFound):
        async with TextToSpeechStream(server.ws_url, "nobody") as tts:
            async for _ in tts:
                pass
    with pytest.raises(InputTimeoutExceeded):
        async with TextToSpeechStream(server.ws_url, "espeak-en", inactivity_timeout=1) as tts:
            async for _ in tts:
                pass


BAD_INPUTS: list[tuple[str, dict[str, str], list[Any], str]] = [
    ("not json", {}, [{"text": " "}, "this is not json"], "invalid_input_message"),
    ("wrong type", {}, [{"text": " "}, {"text": 42}], "invalid_input_message"),
    ("flush not bool", {}, [{"text": " "}, {"text": "hi ", "flush": "yes"}], "invalid_input_message"),
    ("empty first text", {}, [{"text": ""}], "invalid_input_message"),
    ("binary frame", {}, [{"text": " "}, b"\x00\xff"], "invalid_input_message"),
    ("unknown voice", {"voice": "no-such-voice"}, [{"text": " "}], "voice_not_found"),
    ("unknown model", {"model_id": "eleven_nonexistent"}, [{"text": " "}], "model_not_found"),
    ("bad output format", {"output_format": "flac_44100"}, [{"text": " "}], "unsupported_output_format"),
    ("oversized message", {}, [{"text": " "}, {"text": "a " * 600_000}], "message_too_large"),
    (
        "changed voice settings",
        {},
        [{"text": " ", "voice_settings": {"speed": 1.0}}, {"text": "x ", "voice_settings": {"speed": 1.1}}],
        "invalid_input_message",
    ),
]


@pytest.mark.parametrize(("name", "query", "frames", "error"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_gets_error_and_1008_while_other_session_is_unaffected(
    server: RunningServer, name: str, query: dict[str, str], frames: list[Any], error: str
) -> None:
    query = dict(query)
    voice = query.pop("voice", "joe")
    healthy = asyncio.create_task(speak(server, TEXT))
    await asyncio.sleep(0.01)  # the healthy session is mid-stream when the bad one arrives
    messages, code = await collect(ws_url(server, voice, **query), frames)
    assert code == 1008, name
    assert messages, name
    last = messages[-1]
    assert set(last) == {"message", "error", "code"}
    assert last["error"] == error and last["code"] == 1008
    assert last["message"]
    audio, voiced = await healthy
    assert voiced == TEXT
    assert len(audio) / 2 / 22050 > 3.0


async def test_http_stream_and_with_timestamps(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        r = await http.post(
            "/v1/text-to-speech/joe/stream",
            params={"output_format": "mp3_44100_128"},
            json={"text": TEXT, "model_id": "eleven_flash_v2_5"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("audio/mpeg")
        pcm, rate = decode_to_pcm(r.content, AudioFormat.parse("mp3_44100_128"))
        assert 3.0 < len(pcm) / rate < 9.0

        r = await http.post(
            "/v1/text-to-speech/joe/stream/with-timestamps",
            params={"output_format": "pcm_16000"},
            json={"text": TEXT},
        )
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        chars = "".join("".join(line["alignment"]["characters"]) for line in lines)
        assert chars == TEXT
        ends = [t for line in lines for t in line["alignment"]["character_end_times_seconds"]]
        assert ends == sorted(ends)

        r = await http.post("/v1/text-to-speech/nobody/stream", json={"text": "hi"})
        assert r.status_code == 404
        assert r.json()["detail"]["status"] == "voice_not_found"
        r = await http.post(
            "/v1/text-to-speech/joe/stream", params={"output_format": "wav_1"}, json={"text": "hi"}
        )
        assert r.status_code == 422
        r = await http.post("/v1/text-to-speech/joe/stream", json={"nope": 1})
        assert r.status_code == 422


async def test_catalog_lists_voices_and_models(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        voices = (await http.get("/v1/voices")).json()["voices"]
        assert {"joe", "espeak-en"} <= {v["voice_id"] for v in voices}
        models = (await http.get("/v1/models")).json()
        ids = {m["model_id"] for m in models}
        assert {"eleven_flash_v2_5", "eleven_multilingual_v2", "speechwire_piper", "speechwire_espeak"} <= ids
        assert (await http.get("/healthz")).json()["status"] == "ok"


def test_say_cli_writes_a_valid_wav(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = subprocess.run(
        [sys.executable, "-m", "speechwire.cli", "say", "--url", server.ws_url, "--out", str(out)],
        input="Hello from the command line. ",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "time to first audio" in result.stderr
    with wave.open(str(out)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 22050
        assert w.getnframes() / w.getframerate() > 1.0


async def test_first_message_with_text_is_init_plus_text(server: RunningServer) -> None:
    # The websockets guide's own example sends settings, key and the first text together.
    first = {
        "text": "Hello world. ",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.8, "use_speaker_boost": False},
        "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]},
        "xi_api_key": "unused-in-dev",
    }
    url = f"{server.ws_url}/v1/text-to-speech/joe/stream-input?output_format=pcm_16000"
    chars = ""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(first))
        await ws.send(json.dumps({"text": "Nice to meet you. "}))
        await ws.send(json.dumps({"text": ""}))
        async for frame in ws:
            data = json.loads(frame)
            if data.get("audio"):
                chars += "".join(data["alignment"]["chars"])
        assert ws.close_code == 1000
    assert chars == "Hello world. Nice to meet you. "
