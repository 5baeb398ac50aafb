"""The realtime STT protocol without I/O: query validation, frame validation, commit rules."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from speechwire.audio.codecs import ulaw_encode
from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.stt import (
    AudioIn,
    CommitRequested,
    RealtimeParams,
    STTServerSession,
    committed_with_timestamps,
    error_message,
)


def chunk(pcm: bytes, commit: bool = False, sample_rate: int | None = 16000, **extra: object) -> str:
    message: dict[str, object] = {
        "message_type": "input_audio_chunk",
        "audio_base_64": base64.b64encode(pcm).decode(),
        "commit": commit,
    }
    if sample_rate is not None:
        message["sample_rate"] = sample_rate
    message.update(extra)
    return json.dumps(message)


def session(**query: str) -> STTServerSession:
    return STTServerSession(RealtimeParams.from_query(query.items()), max_chunk_seconds=1.0)


def test_query_defaults_and_effective_config() -> None:
    p = RealtimeParams.from_query(
        [
            ("model_id", "scribe_v2_realtime"),
            ("commit_strategy", "vad"),
            ("vad_silence_threshold_secs", "0.5"),
            ("keyterms", "speechwire"),
            ("keyterms", "soxr"),
            ("include_timestamps", "true"),
        ]
    )
    config = p.config_json()
    assert config["commit_strategy"] == "vad" and config["vad_silence_threshold_secs"] == 0.5
    assert config["sample_rate"] == 16000 and config["audio_format"] == "pcm_16000"
    assert config["keyterms"] == ["speechwire", "soxr"] and config["include_timestamps"] is True


@pytest.mark.parametrize(
    "query",
    [
        [("audio_format", "mp3_44100")],
        [("commit_strategy", "sometimes")],
        [("vad_silence_threshold_secs", "9")],
        [("vad_threshold", "abc")],
        [("include_timestamps", "maybe")],
        [("model_id", "a"), ("model_id", "b")],
    ],
)
def test_bad_query_is_invalid_request(query: list[tuple[str, str]]) -> None:
    with pytest.raises(ProtocolError) as err:
        RealtimeParams.from_query(query)
    assert err.value.error == "invalid_request"
    assert error_message(err.value)["message_type"] == "invalid_request"


def test_audio_is_decoded_and_commit_follows() -> None:
    s = session()
    pcm = np.arange(-800, 800, 2, dtype=np.int16)
    events = s.receive(chunk(pcm.tobytes(), previous_text="Earlier we said"))
    assert isinstance(events[0], AudioIn)
    assert np.array_equal(events[0].pcm, pcm) and events[0].previous_text == "Earlier we said"
    events = s.receive(chunk(b"", commit=True))
    assert events == [CommitRequested()]


def test_sdk_sends_null_previous_text_on_every_chunk() -> None:
    s = session()
    for _ in range(3):
        assert s.receive(chunk(b"\x00\x00" * 160, previous_text=None))


def test_ulaw_input_is_decoded() -> None:
    s = session(audio_format="ulaw_8000")
    pcm = (3000 * np.sin(np.arange(800) / 5)).astype(np.int16)
    event = s.receive(chunk(ulaw_encode(pcm), sample_rate=8000))[0]
    assert isinstance(event, AudioIn)
    assert np.corrcoef(event.pcm.astype(float), pcm.astype(float))[0, 1] > 0.99


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (
            '{"message_type": "input_audio_chunk", "audio_base_64": "@@@not base64", "commit": false}',
            "input_error",
        ),
        (chunk(b"\x00\x01\x02"), "input_error"),  # odd byte count
        (chunk(b"\x00\x00" * 10, sample_rate=44100), "input_error"),  # disagrees with audio_format
        (chunk(b"\x00\x00" * 20000), "chunk_size_exceeded"),  # 1.25 s > 1 s limit
        ("not json", "input_error"),
        ('{"message_type": "transcribe_please"}', "input_error"),
        (chunk(b"\x00\x00", commit="yes"), "input_error"),  # type: ignore[arg-type]
        (b"\x00\x01", "input_error"),
    ],
)
def test_bad_frames(frame: str | bytes, kind: str) -> None:
    s = session()
    with pytest.raises(ProtocolError) as err:
        s.receive(frame)
    assert err.value.error == kind
    assert err.value.code == 1008


def test_previous_text_only_with_the_first_chunk() -> None:
    s = session()
    s.receive(chunk(b"\x00\x00" * 100))
    with pytest.raises(ProtocolError, match="first audio chunk"):
        s.receive(chunk(b"\x00\x00" * 100, previous_text="too late"))


def test_a_commit_with_nothing_pending_is_harmless() -> None:
    """Both SDKs' commit() after VAD committed everything, or a double-tapped push-to-talk."""
    s = session()
    assert s.receive(chunk(b"", commit=True)) == [CommitRequested(nothing_pending=True)]
    s.receive(chunk(b"\x00\x00" * 100))
    s.committed()  # the recogniser committed on its own
    assert s.receive(chunk(b"", commit=True)) == [CommitRequested(nothing_pending=True)]
    assert s.receive(chunk(b"", commit=True)) == [CommitRequested(nothing_pending=True)]
    events = s.receive(chunk(b"\x00\x00" * 100, commit=True))  # the session goes on
    assert isinstance(events[0], AudioIn) and events[1] == CommitRequested(nothing_pending=False)


def test_unknown_query_parameters_are_accepted_and_named() -> None:
    p = RealtimeParams.from_query(
        [
            ("model_id", "scribe_v2_realtime"),
            ("timestamps_granularity", "word"),
            ("sample_rate", "16000"),
            ("sample_rate", "16000"),  # even twice
            ("bogus", "1"),
            ("token", "sw_x"),  # known, read by the auth layer: not reported
        ]
    )
    assert p.ignored == ("timestamps_granularity", "sample_rate", "bogus")
    assert p.model_id == "scribe_v2_realtime"


def test_config_vad_commit_strategy_is_the_strategy_string() -> None:
    assert session().params.config_json()["vad_commit_strategy"] == "manual"
    config = session(commit_strategy="vad").params.config_json()
    assert config["vad_commit_strategy"] == "vad" and config["commit_strategy"] == "vad"


def test_language_detection_alone_asks_for_the_language_copy_without_words() -> None:
    assert not session().params.language_message
    assert session(include_timestamps="true").params.language_message
    p = session(include_language_detection="true").params
    assert p.language_message and not p.include_timestamps
    m = committed_with_timestamps("hello", None, p.language_code)
    assert m == {
        "message_type": "committed_transcript_with_timestamps",
        "text": "hello",
        "language_code": "eng",
        "words": None,
    }


def test_timestamps_message_has_words_and_spacing() -> None:
    m = committed_with_timestamps("hello world", [("hello", 0.1, 0.4), ("world", 0.5, 0.9)], "en")
    assert [w["type"] for w in m["words"]] == ["word", "spacing", "word"]
    assert m["words"][2] == {"text": "world", "start": 0.5, "end": 0.9, "type": "word", "logprob": 0.0}
    assert all(w["logprob"] == 0.0 for w in m["words"])  # no engine confidence: neutral log(1)


def test_words_carry_the_engines_logprob() -> None:
    m = committed_with_timestamps("hi there", [("hi", 0.0, 0.2, -0.05), ("there", 0.3, 0.6, None)], "en")
    assert [w["logprob"] for w in m["words"]] == [-0.05, 0.0, 0.0]


@pytest.mark.parametrize(
    ("pieces", "joined"),
    [
        (["Sir,", ", I exist."], "Sir, I exist."),  # the doubled comma of issue 12
        (["Sir,", ",I exist."], "Sir, I exist."),
        (["Sir", ", I exist."], "Sir, I exist."),  # the comma belongs to the piece before
        (["Sir.", "I exist."], "Sir. I exist."),
        (["", "Hello", "  ", "world."], "Hello world."),
        ([", hello"], "hello"),
        (["Well...", "... fine."], "Well... fine."),
        ([], ""),
    ],
)
def test_joining_decodes_never_doubles_punctuation(pieces: list[str], joined: str) -> None:
    from speechwire.engines.base import join_texts

    assert join_texts(pieces) == joined
