"""Client and server sessions of each protocol driven against each other in memory (h11 style).

No sockets and no engines: the client session's frames go into the server session, the server's
events are "voiced" by a stand-in engine (alignment = the characters it was given, as our
engines guarantee), and those frames go back into the client session. A reconnect is a fresh
server session fed the client's resume frames.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from speechwire.audio.alignment import CharAlignment
from speechwire.protocol.multi import ContextClosed, ContextText, MultiStreamSession
from speechwire.protocol.multi_client import ContextAudio, ContextFinished, MultiClientSession
from speechwire.protocol.retry import RETRY_CLOSE_CODES, RETRY_ERRORS, Decision, decide
from speechwire.protocol.stt import (
    AudioIn,
    CommitRequested,
    RealtimeParams,
    STTServerSession,
    committed_transcript,
    partial_transcript,
    session_started,
)
from speechwire.protocol.stt_client import (
    CommittedTranscript,
    PartialTranscript,
    SessionStarted,
    STTClientSession,
    STTClientState,
)
from speechwire.protocol.tts import (
    FINAL_MESSAGE,
    Generate,
    InputEnded,
    StreamInputParams,
    TTSServerSession,
    audio_message,
)
from speechwire.protocol.tts_client import (
    AudioReceived,
    ErrorReceived,
    FinalReceived,
    TTSClientSession,
    TTSClientState,
    advance_voiced,
)


def voiced(text: str, **extra: Any) -> str:
    """What an engine sends for ``text``: some audio and one aligned character per input char."""
    alignment = CharAlignment(tuple(text), tuple(range(len(text))), (1,) * len(text))
    return json.dumps({**audio_message(b"\x00\x00" * len(text), alignment), **extra})


def tts_server() -> TTSServerSession:
    return TTSServerSession(StreamInputParams.from_query("joe", {}), now=0.0)


def feed(server: TTSServerSession, frames: list[str], now: float = 0.0) -> list[object]:
    return [event for frame in frames for event in server.receive(frame, now)]


def test_tts_pair_voices_every_character_and_finishes() -> None:
    client, server = TTSClientSession({"speed": 1.0}), tts_server()
    frames = [
        client.init(),
        client.text("Hello there. "),
        client.text("How are you?", flush=True),
        client.end(),
    ]
    events = feed(server, frames)
    assert server.voice_settings is not None and isinstance(events[-1], InputEnded)
    for event in events:
        if isinstance(event, Generate):
            assert isinstance(client.receive(voiced(event.text)), AudioReceived)
    assert client.voiced_text == client.log.sent == "Hello there. How are you?"
    assert client.log.voiced == len(client.log.sent)
    assert isinstance(client.receive(json.dumps(FINAL_MESSAGE)), FinalReceived)
    assert client.state is TTSClientState.FINISHED


def test_tts_resume_sends_exactly_the_unvoiced_rest_in_order() -> None:
    client, first = TTSClientSession(), tts_server()
    sent = [
        client.init(),
        client.text("One sentence here. ", flush=True),
        client.text("Two more. ", flush=True),
    ]
    sent += [client.text("And an open tail")]
    generated = [e for e in feed(first, sent) if isinstance(e, Generate)]
    assert [g.text for g in generated] == ["One sentence here. ", "Two more. "]
    client.receive(voiced(generated[0].text))  # the second chunk is lost in the cut
    second = tts_server()
    resumed = feed(second, [*client.resume(), client.end()])
    again = [e.text for e in resumed if isinstance(e, Generate)]
    assert "".join(again) == "Two more. And an open tail"  # the rest, once, in order
    assert isinstance(resumed[-1], InputEnded)
    for text in again:
        client.receive(voiced(text))
    assert client.voiced_text == client.log.sent  # every character voiced exactly once


def test_tts_resume_after_end_repeats_the_end() -> None:
    client = TTSClientSession()
    feed(tts_server(), [client.init(), client.text("All of it. "), client.end()])
    frames = client.resume()
    assert json.loads(frames[-1]) == {"text": ""} and json.loads(frames[1]) == {
        "text": "All of it. ",
        "flush": True,
    }


def test_tts_error_frame_is_an_event() -> None:
    client = TTSClientSession()
    frame = json.dumps({"message": "slow", "error": "input_timeout_exceeded", "code": 1008})
    assert client.receive(frame) == ErrorReceived("input_timeout_exceeded", "slow", 1008)
    assert client.state is TTSClientState.FAILED


@pytest.mark.parametrize(
    ("sent", "chars", "end"),
    [
        ("Hello there friend", "Hello ", 6),  # exact, as our server sends
        ("Hello there friend", "Hello", 5),  # an upstream that drops the trailing space
        ("Hello  there", "Hello there", 12),  # collapsed whitespace
        ("Hi there", " Hi", 2),  # an added leading space consumes nothing
        ("Hi", "Hi there", 2),  # never past the end
    ],
)
def test_voiced_characters_follow_non_space_characters(sent: str, chars: str, end: int) -> None:
    event = AudioReceived(b"", CharAlignment(tuple(chars), (0,) * len(chars), (0,) * len(chars)), None)
    assert advance_voiced(sent, 0, event) == end


def multi_server() -> MultiStreamSession:
    return MultiStreamSession(StreamInputParams.from_query("joe", {}), now=0.0)


def test_multi_pair_drops_interrupted_audio_and_delivers_closed_audio() -> None:
    client, server = MultiClientSession(), multi_server()
    first, frame = client.start_context("First reply. ", flush=True)
    out = server.receive(frame, 0.0)
    closing = client.close_context(first)
    assert closing is not None
    out += server.receive(closing, 0.0)
    second, frame = client.start_context("Second reply. ", flush=True)
    out += server.receive(frame, 0.0)
    interrupt = client.close_context(second, cancel=True)
    assert interrupt is not None
    out += server.receive(interrupt, 0.0)
    received = []
    for event in out:
        if isinstance(event, ContextText):
            received.append(client.receive(voiced(event.generate.text, contextId=event.context_id)))
        elif isinstance(event, ContextClosed):
            received.append(client.receive(json.dumps({"isFinal": True, "contextId": event.context_id})))
    assert received == [
        ContextAudio(
            first, b"\x00\x00" * 13, CharAlignment(tuple("First reply. "), tuple(range(13)), (1,) * 13)
        ),
        ContextFinished(first),
        None,  # the interrupted context's audio: dropped
        None,  # and its final: nothing to report
    ]
    assert client.dropped_chunks == 1 and not client.cancelled_contexts and not client.closed_contexts
    assert client.receive(voiced("stale", contextId="ctx-99")) is None  # never opened here


def test_multi_resume_reopens_unfinished_contexts_with_their_rest() -> None:
    client, server = MultiClientSession(), multi_server()
    cid, frame = client.start_context("Done part. ", flush=True)
    events = server.receive(frame, 0.0)
    events += server.receive(client.text("Lost part. ", flush=True), 0.0)
    texts = [e.generate.text for e in events if isinstance(e, ContextText)]
    assert texts == ["Done part. ", "Lost part. "]
    client.receive(voiced(texts[0], contextId=cid))
    closing = client.close_context()
    assert closing is not None
    fresh = multi_server()
    resumed = [event for f in client.resume() for event in fresh.receive(f, 1.0)]
    assert [e.generate.text for e in resumed if isinstance(e, ContextText)] == ["Lost part. "]
    assert isinstance(resumed[-1], ContextClosed) and resumed[-1].context_id == cid
    assert json.loads(client.close_socket()) == {"close_socket": True}


def stt_server() -> STTServerSession:
    return STTServerSession(RealtimeParams())


def test_stt_pair_audio_commit_and_transcripts() -> None:
    client, server = STTClientSession(16000, keep=True), stt_server()
    assert isinstance(
        client.receive(json.dumps(session_started("s1", RealtimeParams())), 0.0), SessionStarted
    )
    assert client.state is STTClientState.OPEN
    pcm = (np.arange(1600) % 100).astype("<i2")
    (audio,) = server.receive(client.audio(pcm.tobytes()))
    assert isinstance(audio, AudioIn) and np.array_equal(audio.pcm, pcm)
    assert server.receive(client.commit()) == [CommitRequested()]
    assert client.receive(json.dumps(partial_transcript("hel")), 1.0) == PartialTranscript("hel", 1.0)
    assert client.pending  # not committed yet: kept for a resume
    assert client.receive(json.dumps(committed_transcript("hello")), 2.0) == CommittedTranscript("hello", 2.0)
    assert not client.pending and client.last_committed == "hello"
    timestamped = json.dumps(
        {"message_type": "committed_transcript_with_timestamps", "text": "hello", "words": None}
    )
    assert client.receive(timestamped, 2.0) == CommittedTranscript("hello", 2.0, (), timestamped=True)


def test_stt_resume_resends_uncommitted_audio_with_previous_text() -> None:
    client = STTClientSession(16000, keep=True)
    client.receive(json.dumps(committed_transcript("the first part")), 0.0)
    chunks = [np.full(800, i, "<i2") for i in range(1, 4)]
    for chunk in chunks:
        client.audio(chunk.tobytes())
    fresh = stt_server()
    resumed = [event for frame in client.resume() for event in fresh.receive(frame)]
    assert all(isinstance(e, AudioIn) for e in resumed)
    assert [e.pcm.tolist() for e in resumed if isinstance(e, AudioIn)] == [c.tolist() for c in chunks]
    assert [e.previous_text for e in resumed if isinstance(e, AudioIn)] == ["the first part", None, None]


def test_stt_error_frame_is_an_event() -> None:
    client = STTClientSession()
    event = client.receive(json.dumps({"message_type": "input_error", "error": "bad base64"}), 0.0)
    assert (event.error, event.message, client.state) == ("input_error", "bad base64", STTClientState.FAILED)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("code", "error", "decision"),
    [
        (None, None, Decision.RETRY),  # a cut: no close frame
        (1006, None, Decision.RETRY),
        (1001, None, Decision.RETRY),  # server draining
        (1008, "voice_not_found", Decision.FAIL),
        (1008, "input_timeout_exceeded", Decision.FAIL),
        (1008, "session_time_limit_exceeded", Decision.RETRY),
        (1008, "queue_overflow", Decision.RETRY),
        (1013, "resource_exhausted", Decision.RETRY),
        (1013, "error", Decision.RETRY),  # an STT relay that cannot reach the cloud
        (1011, "internal_error", Decision.RETRY),
        (1009, None, Decision.FAIL),
        (4000, None, Decision.RETRY),
    ],
)
def test_retry_decision(code: int | None, error: str | None, decision: Decision) -> None:
    assert decide(code, error) is decision


def test_retry_table_names_only_errors_the_server_sends() -> None:
    from pathlib import Path

    sources = [
        p for p in Path("src/speechwire").rglob("*.py") if "client" not in str(p) and p.name != "retry.py"
    ]
    server = "\n".join(p.read_text() for p in sources)
    for error in RETRY_ERRORS:
        assert f'"{error}"' in server, error
    assert set(RETRY_CLOSE_CODES) >= {1000, 1001, 1006, 1008, 1011, 1013}
