"""The stream-input protocol without I/O: the server session and the client's parser, in memory."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechwire.audio.alignment import CharAlignment
from speechwire.engines.synthesis import segment
from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.multi import (
    ContextClosed,
    ContextOpened,
    ContextReinitialized,
    ContextText,
    MultiStreamSession,
)
from speechwire.protocol.tts import (
    Generate,
    Initialized,
    InputEnded,
    StreamInputParams,
    TTSServerSession,
    TTSState,
    audio_message,
)
from speechwire.protocol.tts_client import AudioReceived, ErrorReceived, FinalReceived, parse_server_message

INIT = json.dumps({"text": " "})


def session(**query: str) -> TTSServerSession:
    return TTSServerSession(StreamInputParams.from_query("joe", query), now=0.0)


def texts(events: Sequence[object]) -> list[str]:
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
    s.expire(8.9)
    with pytest.raises(ProtocolError) as err:
        s.expire(9.0)
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
        (json.dumps({"text": ""}), "invalid_input_message"),
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


def test_japanese_and_chinese_split_at_their_full_width_marks() -> None:
    """No space follows 。、 in Japanese or Chinese: the marks themselves end sentences and
    clauses, so the first clause is the quick first phrase (a whole sentence was one piece)."""
    pieces = segment("こんにちは、お元気ですか。「はい」と言いました。", quick_start=True)
    assert [p.text for p in pieces] == ["こんにちは、", "お元気ですか。", "「はい」と言いました。"]
    assert [p.text for p in segment("你好，世界！再见。", quick_start=False)] == ["你好，世界！", "再见。"]
    assert [p.text for p in segment("版本 3.5 很好。", quick_start=False)] == ["版本 3.5 很好。"]


# ---- issue 12: what real clients send ------------------------------------------------------


def test_first_message_may_carry_text() -> None:
    # The websockets guide's own example: settings, key and the first text in one message.
    s = session()
    first = {
        "text": "Hello world. ",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.8},
        "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]},
        "xi_api_key": "k",
    }
    events = s.receive(json.dumps(first), 0)
    assert isinstance(events[0], Initialized) and events[0].api_key == "k"
    assert texts(events) == []  # buffered by the schedule, like any text
    events = s.receive(json.dumps({"text": ""}), 1)
    assert texts(events) == ["Hello world. "] and isinstance(events[-1], InputEnded)


def test_first_message_with_text_and_flush_generates_it() -> None:
    s = session()
    events = s.receive(json.dumps({"text": "Hi. ", "flush": True}), 0)
    assert isinstance(events[0], Initialized) and texts(events) == ["Hi. "]


def test_auto_mode_generates_a_sentence_message_without_trailing_space_at_once() -> None:
    s = session(auto_mode="true")
    s.receive(INIT, 0)
    line = "Let me tell you a long story about the old lighthouse keeper."
    assert texts(s.receive(json.dumps({"text": line}), 1)) == [line]
    assert texts(s.receive(json.dumps({"text": 'He said "no."'}), 1)) == ['He said "no."']
    assert texts(s.receive(json.dumps({"text": "and then"}), 1)) == []


def test_message_boundary_after_a_sentence_is_a_word_boundary() -> None:
    # Without auto_mode, both messages wait in one buffer; the flush cuts them apart at the
    # boundary so the engine never reads "there!I", and the characters are exactly those sent.
    s = session()
    s.receive(INIT, 0)
    s.receive(json.dumps({"text": "Hello there!"}), 1)
    s.receive(json.dumps({"text": "I can help with that."}), 1)
    got = texts(s.receive(json.dumps({"text": ""}), 2))
    assert got == ["Hello there!", "I can help with that."]
    # A boundary inside a word is not one.
    s = session()
    s.receive(INIT, 0)
    s.receive(json.dumps({"text": "some"}), 3)
    s.receive(json.dumps({"text": "thing. "}), 3)
    assert texts(s.receive(json.dumps({"text": ""}), 4)) == ["something. "]


def test_ssml_tags_are_never_cut_apart() -> None:
    s = session(enable_ssml_parsing="true", auto_mode="true")
    s.receive(INIT, 0)
    assert texts(s.receive(json.dumps({"text": 'Wait, <break time="1s"/> '}), 1)) == ["Wait, "]
    s.receive(json.dumps({"text": "now. "}), 1)
    plain = session(auto_mode="true")
    plain.receive(INIT, 0)
    assert texts(plain.receive(json.dumps({"text": "Wait, <break "}), 1)) == ["Wait, "]


def multi(**query: str) -> MultiStreamSession:
    return MultiStreamSession(StreamInputParams.from_query("joe", query), now=0.0)


def m(session_: MultiStreamSession, now: float = 1.0, **fields: object) -> list[object]:
    return list(session_.receive(json.dumps(fields), now))


def ctx_texts(events: Sequence[object], cid: str) -> list[str]:
    return [e.generate.text for e in events if isinstance(e, ContextText) and e.context_id == cid]


def test_close_context_voices_flushed_and_buffered_text_then_final() -> None:
    s = multi()
    m(s, text="The whole reply, ", context_id="a")
    flushed = m(s, context_id="a", flush=True)
    assert ctx_texts(flushed, "a") == ["The whole reply, "]
    m(s, text="and a tail", context_id="a")
    closed = m(s, context_id="a", close_context=True)
    assert ctx_texts(closed, "a") == ["and a tail"]  # buffered text is flushed by the close
    assert isinstance(closed[-1], ContextClosed) and closed[-1].context_id == "a"
    assert "a" not in s.contexts and s.finishing == {"a": 1}


def test_frames_for_a_finishing_context_are_ignored_but_new_text_reopens_it() -> None:
    s = multi()
    m(s, text="Hi. ", context_id="a", flush=True)
    m(s, context_id="a", close_context=True)
    assert m(s, context_id="a", flush=True) == []
    assert m(s, context_id="a", text="") == []
    assert m(s, context_id="a", close_context=True) == []
    events = m(s, context_id="a", text="Again. ", flush=True)
    assert isinstance(events[0], ContextOpened) and ctx_texts(events, "a") == ["Again. "]
    s.finished("a")
    assert s.finishing == {}


def test_closed_but_finishing_contexts_do_not_count_against_the_limit() -> None:
    s = multi()
    for i in range(5):
        m(s, text="Talk. ", context_id=f"c{i}", flush=True)
    m(s, context_id="c0", close_context=True)
    assert isinstance(m(s, text=" ", context_id="c5")[0], ContextOpened)
    with pytest.raises(ProtocolError) as err:
        m(s, text=" ", context_id="c6")
    assert err.value.error == "max_active_conversations"


def test_new_voice_settings_reinitialise_the_context_after_its_buffered_text() -> None:
    s = multi()
    m(s, text=" ", context_id="a", voice_settings={"speed": 1.0})
    m(s, text="Old settings ", context_id="a")
    events = m(s, text="new settings. ", context_id="a", voice_settings={"speed": 1.2}, flush=True)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ContextText", "ContextReinitialized", "ContextText"]
    assert ctx_texts(events, "a") == ["Old settings ", "new settings. "]
    reinit = events[1]
    assert isinstance(reinit, ContextReinitialized) and reinit.init.voice_settings is not None
    assert reinit.init.voice_settings.speed == 1.2


def test_camel_case_context_id_addresses_that_context() -> None:
    s = multi()
    events = m(s, text="Hi. ", contextId="camel", flush=True)
    assert isinstance(events[0], ContextOpened) and events[0].context_id == "camel"
    assert "default" not in s.contexts


def test_timeout_voices_released_text_and_drops_the_unflushed_rest() -> None:
    s = multi(inactivity_timeout="2")
    m(s, 0.0, text="Released. ", context_id="a", flush=True)
    m(s, 0.0, text="never flushed", context_id="a")
    events = s.expire(2.5)
    assert events == [ContextClosed("a", "timeout")] and s.finishing == {"a": 1}


def test_close_socket_closes_every_context_with_its_text() -> None:
    s = multi()
    m(s, text="One, ", context_id="a")
    m(s, text="Two. ", context_id="b", flush=True)
    events = m(s, close_socket=True)
    assert ctx_texts(events, "a") == ["One, "]
    assert [type(e).__name__ for e in events][-3:] == ["ContextClosed", "ContextClosed", "SocketClosing"]


def test_keep_alive_for_no_open_context_opens_none() -> None:
    s = multi()
    assert m(s, text="") == [] and m(s, text="", context_id="gone", flush=True) == []
    assert s.contexts == {}
