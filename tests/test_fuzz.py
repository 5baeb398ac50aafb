"""Fuzzing: the sans-I/O parsers under hypothesis, then a live fuzzer against the real server.

Parsers may only answer malformed input with ``ProtocolError`` (the protocol's error), never with
any other exception. The live fuzzer sends over a thousand malformed frames (bad JSON, binary,
huge, invalid UTF-8, deep nesting, wrong types) and slow handshakes while a TTS and an STT
session run next to it: every malformed frame gets the protocol's error and close (or is ignored
where the protocol says so), the healthy sessions see no error, and the server stays up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import string
from typing import Any

import numpy as np
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechwire.bench.wer import wer
from speechwire.client.stt import paced_chunks
from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.multi import MultiStreamSession
from speechwire.protocol.stt import RealtimeParams, STTServerSession
from speechwire.protocol.tts import StreamInputParams, TTSServerSession
from speechwire.server.ops.runner import RunningServer
from tests.conftest import speech_manifest

# --- hypothesis: the parsers -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
TTS_KEYS = [
    "text",
    "flush",
    "try_trigger_generation",
    "voice_settings",
    "generation_config",
    "xi_api_key",
    "context_id",
    "close_context",
    "close_socket",
    "chunk_length_schedule",
    "speed",
    "stability",
]
STT_KEYS = ["message_type", "audio_base_64", "commit", "sample_rate", "previous_text"]


def frames(keys: list[str]) -> st.SearchStrategy[str | bytes]:
    shaped = st.dictionaries(st.sampled_from(keys), json_values, max_size=5).map(json.dumps)
    return st.one_of(shaped, json_values.map(json.dumps), st.text(max_size=200), st.binary(max_size=200))


def only_protocol_errors(session: Any, batch: list[str | bytes], *args: Any) -> None:
    for frame in batch:
        try:
            session.receive(frame, *args)
        except ProtocolError as exc:
            assert exc.code in (1008, 1009, 1011, 1013, 1003, 1007), exc
            return  # the session is over after an error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(TTS_KEYS), min_size=1, max_size=6))
def test_stream_input_parser_only_raises_protocol_errors(batch: list[str | bytes]) -> None:
    session = TTSServerSession(StreamInputParams.from_query("joe", {}), 0.0, max_message_bytes=4096)
    only_protocol_errors(session, batch, 0.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(TTS_KEYS), min_size=1, max_size=8))
def test_multi_stream_parser_only_raises_protocol_errors(batch: list[str | bytes]) -> None:
    session = MultiStreamSession(StreamInputParams.from_query("joe", {}), 0.0, max_message_bytes=4096)
    only_protocol_errors(session, batch, 0.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(STT_KEYS), min_size=1, max_size=6))
def test_realtime_stt_parser_only_raises_protocol_errors(batch: list[str | bytes]) -> None:
    session = STTServerSession(RealtimeParams())
    only_protocol_errors(session, batch)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "model_id",
                    "audio_format",
                    "commit_strategy",
                    "vad_threshold",
                    "include_timestamps",
                    "keyterms",
                    "language_code",
                    "x",
                ]
            ),
            st.text(max_size=30),
        ),
        max_size=6,
    )
)
def test_realtime_query_only_raises_protocol_errors(items: list[tuple[str, str]]) -> None:
    with contextlib.suppress(ProtocolError):
        RealtimeParams.from_query(items)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "model_id",
                "output_format",
                "inactivity_timeout",
                "seed",
                "auto_mode",
                "sync_alignment",
                "apply_text_normalization",
                "x",
            ]
        ),
        st.text(max_size=30),
        max_size=6,
    )
)
def test_stream_input_query_only_raises_protocol_errors(query: dict[str, str]) -> None:
    with contextlib.suppress(ProtocolError):
        StreamInputParams.from_query("joe", query)


# --- live: the real server -----------------------------------------------------------------------

ROUTES = {
    "tts": "/v1/text-to-speech/joe/stream-input?output_format=pcm_16000",
    "multi": "/v1/text-to-speech/joe/multi-stream-input?output_format=pcm_16000",
    "stt": "/v1/speech-to-text/realtime",
}


def malformed(rng: random.Random, route: str) -> tuple[str, str | bytes, bool]:
    """(category, frame, sent as text even if bytes)."""
    kind = rng.choice(["json", "binary", "utf8", "nesting", "types", "types", "huge"])
    if kind == "json":
        bad = [
            "{",
            "}",
            "{'text': 'single quotes'}",
            '{"text": "unterminated',
            "null",
            "[]",
            "42",
            '""',
            "".join(rng.choices(string.printable, k=rng.randint(1, 80))),
        ]
        return kind, rng.choice(bad), False
    if kind == "binary":
        return kind, rng.randbytes(rng.randint(1, 2000)), False
    if kind == "utf8":
        return (
            kind,
            b'{"text": "' + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]) + b'"}',
            True,
        )
    if kind == "nesting":
        depth = rng.choice([1000, 10_000, 100_000])
        return kind, '{"text": ' + "[" * depth + "]" * depth + "}", False
    if kind == "huge":
        return kind, json.dumps({"text": "a" * (1_200_000 + rng.randint(0, 1000))}), False
    if route == "stt":
        wrong = [
            {"message_type": "input_audio_chunk", "audio_base_64": 5},
            {"message_type": "input_audio_chunk", "audio_base_64": "not base64!!"},
            {"message_type": "input_audio_chunk", "audio_base_64": "AAA", "commit": "yes"},
            {"message_type": "input_audio_chunk", "audio_base_64": "AAAA", "sample_rate": "16000"},
            {"message_type": "input_audio_chunk", "audio_base_64": "AAAA", "sample_rate": 44100},
            {"message_type": "shout"},
            {"message_type": ["input_audio_chunk"]},
            # (an empty commit with nothing pending is harmless, as upstream: not malformed)
        ]
    else:
        wrong = [
            {"text": 5},
            {"text": None},
            {"text": " ", "voice_settings": "loud"},
            {"text": " ", "voice_settings": {"speed": "fast"}},
            {"text": " ", "generation_config": {"chunk_length_schedule": "soon"}},
            {"text": "hello", "flush": "yes", "context_id": 7},
            {"text": ["a"], "context_id": []},
            {"flush": True, "text": {"nested": "dict"}},
        ]
    return kind, json.dumps(rng.choice(wrong)), False


async def fuzz_one(base: str, route: str, rng: random.Random) -> tuple[str, bool, int | None]:
    """One connection, one malformed frame: (category, answered by the protocol, close code)."""
    kind, frame, as_text = malformed(rng, route)
    async with websockets.connect(base + ROUTES[route], max_size=None) as ws:
        if route == "stt":
            await ws.recv()  # session_started
        try:
            await ws.send(frame, text=True if as_text else None)
            reply = await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            return kind, True, ws.close_code  # closed (for example 1007 invalid UTF-8, 1009 too big)
        except TimeoutError:
            return kind, False, None
        data = json.loads(reply)
        answered = "error" in data or str(data.get("message_type", "")).endswith("error")
        try:
            await asyncio.wait_for(ws.wait_closed(), 10)
        except TimeoutError:
            return kind, False, None
        return kind, answered, ws.close_code


async def slow_handshake(port: int, seconds: float) -> None:
    """A client that trickles its HTTP upgrade request a byte at a time, then gives up."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {ROUTES['tts']} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode()
    try:
        for byte in request[: int(seconds / 0.1)]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def healthy_tts(base: str, stop: asyncio.Event) -> tuple[str, str, list[Any]]:
    """A session that keeps speaking: what it sent, what the alignment says was voiced, and
    anything that was neither audio nor the final message."""
    problems: list[Any] = []
    voiced: list[str] = []
    sent: list[str] = []
    async with websockets.connect(base + ROUTES["tts"]) as ws:
        await ws.send(json.dumps({"text": " "}))

        async def read() -> None:
            async for message in ws:
                data = json.loads(message)
                if data.get("audio"):
                    voiced.extend((data.get("alignment") or {}).get("chars", []))
                elif not data.get("isFinal"):
                    problems.append(data)

        reader = asyncio.create_task(read())
        while not stop.is_set():
            sentence = "The quick brown fox jumps over the lazy dog. "
            sent.append(sentence)
            await ws.send(json.dumps({"text": sentence, "flush": True}))
            await asyncio.sleep(0.3)
        await ws.send(json.dumps({"text": ""}))
        await asyncio.wait_for(reader, 60)
    return "".join(sent), "".join(voiced), problems


async def healthy_stt(base: str) -> tuple[str, list[Any], str]:
    utterance = next(u for u in speech_manifest() if u.path.name == "lj_LJ001-0001.wav")
    from speechwire.audio.wav import read_wav

    pcm, _ = read_wav(utterance.path)
    problems: list[Any] = []
    committed: list[str] = []
    async with websockets.connect(
        base + ROUTES["stt"] + "?commit_strategy=vad&vad_silence_threshold_secs=0.5"
    ) as ws:
        await ws.recv()

        async def read() -> None:
            async for message in ws:
                data = json.loads(message)
                if data["message_type"] == "committed_transcript":
                    committed.append(data["text"])
                elif data["message_type"] != "partial_transcript":
                    problems.append(data)

        reader = asyncio.create_task(read())
        async for piece in paced_chunks(np.concatenate([pcm, np.zeros(24000, np.int16)]), 16000, 100):
            chunk = base64.b64encode(piece.astype("<i2").tobytes()).decode()
            await ws.send(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": chunk}))
        for _ in range(60):
            if committed:
                break
            await asyncio.sleep(0.1)
        reader.cancel()
    return " ".join(committed), problems, utterance.transcript


@pytest.mark.slow
async def test_live_fuzzer_thousand_frames_while_healthy_sessions_run(server: RunningServer) -> None:
    rng = random.Random(20261124)
    base = server.ws_url
    stop = asyncio.Event()
    tts_task = asyncio.create_task(healthy_tts(base, stop))
    stt_task = asyncio.create_task(healthy_stt(base))
    slow = [asyncio.create_task(slow_handshake(server.port, 3.0)) for _ in range(5)]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]  # never speak
    results: list[tuple[str, bool, int | None]] = []
    semaphore = asyncio.Semaphore(6)  # within the STT admission cap (3 a core) with the healthy one

    async def one(i: int) -> None:
        async with semaphore:
            results.append(await fuzz_one(base, ["tts", "multi", "stt"][i % 3], random.Random(rng.random())))

    await asyncio.gather(*(one(i) for i in range(1050)))
    stop.set()
    sent, voiced, tts_problems = await tts_task
    heard, stt_problems, reference = await stt_task
    await asyncio.gather(*slow)
    for sock in idle:
        sock.close()

    unanswered = [r for r in results if not r[1]]
    assert len(results) >= 1000 and unanswered == [], unanswered[:5]
    assert {code for _, _, code in results} <= {1007, 1008, 1009, 1003}, {c for _, _, c in results}
    assert {kind for kind, _, _ in results} >= {"json", "binary", "utf8", "nesting", "types", "huge"}
    assert tts_problems == [] and len(sent) > 200
    assert voiced.split() == sent.split()  # every word the healthy session sent was voiced, once
    assert stt_problems == [] and wer(reference, heard).rate <= 0.15, heard
    # The server is still up and serving.
    async with websockets.connect(base + ROUTES["stt"]) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
