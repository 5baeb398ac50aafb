"""Every server session has the one interface the driver runs: receive, deadline, expire."""

from __future__ import annotations

import json

import pytest

from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.multi import MultiStreamSession
from speechwire.protocol.session import ServerSession
from speechwire.protocol.stt import RealtimeParams, STTServerSession
from speechwire.protocol.tts import StreamInputParams, TTSServerSession


def test_every_session_is_a_server_session() -> None:
    params = StreamInputParams("voice")
    sessions: list[ServerSession[object]] = [
        TTSServerSession(params, 0.0),
        MultiStreamSession(params, 0.0),
        STTServerSession(RealtimeParams()),
    ]
    for session in sessions:
        # mypy covers src/ only, so the interface is checked here at run time: every member exists
        # and is callable as the driver calls it.
        assert all(callable(getattr(session, name)) for name in ("receive", "expire"))
        assert session.deadline is None or isinstance(session.deadline, float)
        assert session.expire(0.0) == []


def test_stt_has_no_inactivity_deadline_by_default() -> None:
    """Today's clients sit silent for minutes (push-to-talk): no idle timeout unless configured."""
    session = STTServerSession(RealtimeParams())
    assert session.deadline is None
    assert session.expire(1e9) == []


def test_stt_inactivity_deadline_when_configured() -> None:
    session = STTServerSession(RealtimeParams(), inactivity_timeout_s=30.0, now=0.0)
    assert session.deadline == 30.0
    session.receive(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": ""}), 10.0)
    assert session.deadline == 40.0
    assert session.expire(39.9) == []
    with pytest.raises(ProtocolError) as err:
        session.expire(40.0)
    assert (err.value.error, err.value.code) == ("input_error", 1008)
    assert session.deadline is None
