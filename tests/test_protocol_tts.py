"""The stream-input protocol without I/O: the server session and the client's parser, in memory."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechwire.audio.alignment import CharAlignment
from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.text import segment
from speechwire.protocol.tts import (
    AudioReceived,
    ErrorReceived,
    FinalReceived,
    Generate,
    Initialized,
    InputEnded,
    StreamInputParams,
    TTSServerSession,
    TTSState,
    audio_message,
    parse_server_message,
)

INIT = json.dumps({"text": " "})


def session(**query: str) -> TTSServerSession:
    return TTSServerSession(StreamInputParams.from_query("joe", query), now=0.0)


def texts(events: list[object]) -> list[str]:
    return [e.text for e in events if isinstance(e, Generate)]


def test_initial_message_fixes_settings() -> None:
    s = session()
    events = s.receive(
        json.dumps(
            {
                "text": " ",
                "voice_settings": {"speed": 1.1, "stability": 0.5},
                "generation_config": {"chunk_length_schedule": [50, 80]},
                "xi_api_key": "k1",
            }
        ),
        0.0,
    )
    assert isinstance(events[0], Initialized)
    assert events[0].chunk_length_schedule == (50, 80)
    assert events[0].api_key == "k1"
    assert s.state is TTSState.STREAMING


def test_sdk_initial_message_with_nulls_is_accepted() -> None:
    # The official SDK sends voice_settings: null and try_trigger_generation in the first message.
    s = session()
    events = s.receive(
        json.dumps(
            {
                "text": " ",
                "try_trigger_generation": True,
                "voice_settings": None,
                "generation_config": {"chunk_length_schedule": [50]},
            }
        ),
        0.0,
    )
    assert isinstance(events[0], Initialized)


def test_default_schedule_buffers_until_120_chars() -> None:
    s = session()
    s.receive(INIT, 0)
    assert texts(s.receive(json.dumps({"text": "Hello there, this is short. "}), 1)) == []
    more = "And this sentence keeps going on and on for quite a while, until it is well past the limit. "
    more += "Yes. "
    out = texts(s.receive(json.dumps({"text": more}), 2))
    assert len(out) == 1
    assert "".join(out) + s.buffered_text == "Hello there, this is short. " + more


def test_cut_never_splits_a_word() -> None:
    s = session()
    s.receive(json.dumps({"text": " ", "generation_config": {"chunk_length_schedule": [50]}}), 0)
    out = texts(s.receive(json.dumps({"text": "a" * 30 + " bbbbbbbbbbbbbbbbbbbbbbbbbbbb ccc"}), 1))
    assert out == ["a" * 30 + " bbbbbbbbbbbbbbbbbbbbbbbbbbbb "]
    assert s.buffered_text == "ccc"


def test_flush_generates_everything_and_end_emits_input_ended() -> None:
    s = session()
    s.receive(INIT, 0)
    assert texts(s.receive(json.dumps({"text": "Hi. ", "flush": True}), 1)) == ["Hi. "]
    s.receive(json.dumps({"text": "Bye"}), 2)
    events = s.receive(json.dumps({"text": ""}), 3)
    assert texts(events) == ["Bye"]
    assert isinstance(events[-1], InputEnded)
    assert s.deadline is None


def test_every_character_is_generated_exactly_once() -> None:
    s = session()
    s.receive(json.dumps({"text": " ", "generation_config": {"chunk_length_schedule": [50, 60]}}), 0)
    words = ("The quick brown fox jumps over the lazy dog, then naps. " * 6).split(" ")
    sent, got = "", []
    for w in words:
        piece = w + " "
        sent += piece
        got += texts(s.receive(json.dumps({"text": piece, "try_trigger_generation": True}), 1))
    got += texts(s.receive(json.dumps({"text": ""}), 2))
    assert "".join(got).strip() == sent.strip()


def test_auto_mode_generates_at_sentence_and_clause_ends() -> None:
    s = session(auto_mode="true")
    s.receive(INIT, 0)
    assert texts(s.receive(json.dumps({"text": "Hello there, "}), 1)) == ["Hello there, "]
    assert texts(s.receive(json.dumps({"text": "how are"}), 1)) == []
    assert texts(s.receive(json.dumps({"text": " you? "}), 1)) == ["how are you? "]


def test_keep_alive_space_resets_inactivity_timer() -> None:
    s = session(inactivity_timeout="5")
    s.receive(INIT, 0)
    s.receive(json.dumps({"text": " "}), 4)
    s.check_timeout(8.9)
    with pytest.raises(ProtocolError) as err:
        s.check_timeout(9.0)
    assert err.value.error == "input_timeout_exceeded"
    assert err.value.code == 1008


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "invalid_input_message"),
        ("[1, 2]", "invalid_input_message"),
        (json.dumps({"text": 5}), "invalid_input_message"),
        (json.dumps({"flush": True}), "invalid_input_message"),
        (json.dumps({"text": " ", "flush": "yes"}), "invalid_input_message"),
        (json.dumps({"text": " ", "voice_settings": {"speed": 3}}), "invalid_input_message"),
        (
            json.dumps({"text": " ", "generation_config": {"chunk_length_schedule": [10]}}),
            "invalid_input_message",
        ),
        (json.dumps({"text": "Hello before init "}), "invalid_input_message"),
        (b"\x00\x01", "invalid_input_message"),
        (json.dumps({"text": " " * 2000}), "message_too_large"),
    ],
)
def test_bad_first_frames_raise_protocol_errors(frame: str | bytes, error: str) -> None:
    s = TTSServerSession(StreamInputParams.from_query("joe", {}), 0.0, max_message_bytes=1000)
    with pytest.raises(ProtocolError) as err:
        s.receive(frame, 0)
    assert err.value.error == error
    assert err.value.code == 1008
    assert s.state is TTSState.CLOSED
    frame_out = err.value.tts_frame()
    assert set(frame_out) == {"message", "error", "code"}


def test_changing_voice_settings_is_refused() -> None:
    s = session()
    s.receive(json.dumps({"text": " ", "voice_settings": {"speed": 1.0}}), 0)
    s.receive(json.dumps({"text": "ok ", "voice_settings": {"speed": 1.0}}), 1)  # unchanged: fine
    with pytest.raises(ProtocolError, match="voice_settings"):
        s.receive(json.dumps({"text": "no ", "voice_settings": {"speed": 1.1}}), 2)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"output_format": "wav_99"}, "unsupported_output_format"),
        ({"inactivity_timeout": "500"}, "invalid_request"),
        ({"inactivity_timeout": "abc"}, "invalid_request"),
        ({"auto_mode": "maybe"}, "invalid_request"),
    ],
)
def test_bad_query_parameters(query: dict[str, str], error: str) -> None:
    with pytest.raises(ProtocolError) as err:
        StreamInputParams.from_query("joe", query)
    assert err.value.error == error


def test_server_frames_round_trip_through_client_parser() -> None:
    alignment = CharAlignment(("H", "i", " "), (0, 50, 100), (50, 50, 20))
    event = parse_server_message(json.dumps(audio_message(b"\x01\x02", alignment)))
    assert isinstance(event, AudioReceived)
    assert event.audio == b"\x01\x02"
    assert event.alignment == alignment
    assert event.normalized_alignment == alignment
    assert isinstance(parse_server_message(json.dumps({"isFinal": True})), FinalReceived)
    err = ProtocolError("input_timeout_exceeded", "too slow")
    parsed = parse_server_message(json.dumps(err.tts_frame()))
    assert parsed == ErrorReceived("input_timeout_exceeded", "too slow", 1008)


@given(st.text(alphabet=st.sampled_from(list("abc ,.!?\n")), max_size=300), st.booleans())
def test_segment_pieces_concatenate_to_input(text: str, quick: bool) -> None:
    pieces = segment(text, quick_start=quick)
    assert "".join(p.text for p in pieces) == (
        text if text.strip() or not pieces else "".join(p.text for p in pieces)
    )
    if text.strip():
        assert "".join(p.text for p in pieces) == text
    assert all(p.text.strip() for p in pieces[1:])


def test_quick_first_phrase() -> None:
    pieces = segment("The quick brown fox jumps over the lazy dog. ", quick_start=True)
    assert pieces[0].text == "The quick " and pieces[0].seamless
    assert segment("Hello there, how are you? ", quick_start=True)[0].text == "Hello there, "
    assert len(segment("Hi there. ", quick_start=True)) == 1  # too short to split
    assert len(segment("The quick brown fox jumps over the lazy dog. ", quick_start=False)) == 1
