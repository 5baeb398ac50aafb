"""The STT end-pointing state machine, driven directly: VAD frames in, decisions out.

Frames are written as strings, one character a 32 ms VAD frame: ``S`` speech (0.9), ``.``
silence (0.0), ``~`` in between the thresholds (0.3: hysteresis, extends neither run). With the
defaults, onset takes 4 speech frames (0.128 s ≥ 0.1), end of speech 4 silent frames, settling 10
(0.32 s ≥ 0.3) and a VAD commit 47 (1.504 s ≥ 1.5).
"""

from __future__ import annotations

from typing import Any

import pytest

from speechwire.engines.endpointing import (
    TRANSITIONS,
    Action,
    EndpointConfig,
    Endpointer,
    EndpointState,
    Signal,
)
from speechwire.engines.vad import FRAME

PROB = {"S": 0.9, ".": 0.0, "~": 0.3}
OPEN, SETTLE, COMMIT_DUE = Action.OPEN_PHRASE, Action.SETTLE_PHRASE, Action.COMMIT_DUE


def run(ep: Endpointer, frames: str, phrase_s: float = 1.0) -> list[tuple[int, Action]]:
    """Feed ``frames``; the actions with the (0-based) index of the frame that caused them."""
    out: list[tuple[int, Action]] = []
    for i, ch in enumerate(frames):
        out.extend((i, a) for a in ep.frame(PROB[ch], (i + 1) * FRAME, phrase_s))
    return out


SCENARIOS: list[tuple[str, dict[str, Any], str, list[tuple[int, Action]], EndpointState]] = [
    # name, config, frames, expected actions, final state
    ("too short for onset", {}, "SSS", [], EndpointState.SILENCE),
    ("onset after min_speech", {}, "SSSS", [(3, OPEN)], EndpointState.SPEECH),
    ("a blip is not speech", {}, "SSS....SSS", [], EndpointState.SILENCE),
    ("hysteresis extends no run", {}, "SS~~SS", [(5, OPEN)], EndpointState.SPEECH),
    ("speech ends after min_silence", {}, "SSSS....", [(3, OPEN)], EndpointState.PAUSE),
    ("a short pause keeps the phrase", {}, "SSSS.....SSSS", [(3, OPEN)], EndpointState.SPEECH),
    ("a long pause settles", {}, "SSSS" + "." * 10, [(3, OPEN), (13, SETTLE)], EndpointState.SETTLED),
    (
        "speech after a settle opens a new phrase",
        {},
        "SSSS" + "." * 10 + "SSSS",
        [(3, OPEN), (13, SETTLE), (17, OPEN)],
        EndpointState.SPEECH,
    ),
    (
        "manual mode never commits on silence",
        {},
        "SSSS" + "." * 60,
        [(3, OPEN), (13, SETTLE)],
        EndpointState.SETTLED,
    ),
    (
        "vad mode: commit due after silence_commit_s",
        {"commit_on_vad": True},
        "SSSS" + "." * 47,
        [(3, OPEN), (13, SETTLE), (50, COMMIT_DUE)],
        EndpointState.SETTLED,
    ),
    (
        "vad mode: no speech, no commit",
        {"commit_on_vad": True},
        "." * 60,
        [],
        EndpointState.SILENCE,
    ),
    (
        "vad mode: still speaking (long min_silence) is no end of turn",
        {"commit_on_vad": True, "silence_commit_s": 0.3, "min_silence_s": 2.0},
        "SSSS" + "." * 20,
        [(3, OPEN)],
        EndpointState.SPEECH,
    ),
    (
        "settle pause is at most 0.6 of the commit silence",
        {"silence_commit_s": 0.3},  # 0.18 s: 6 frames
        "SSSS" + "." * 6,
        [(3, OPEN), (9, SETTLE)],
        EndpointState.SETTLED,
    ),
]


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected", "final"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_scenario(
    name: str, config: dict[str, Any], frames: str, expected: list[tuple[int, Action]], final: EndpointState
) -> None:
    ep = Endpointer(EndpointConfig(**config))
    assert run(ep, frames) == expected, name
    assert ep.state is final


def test_a_long_phrase_settles_at_two_frames_of_pause() -> None:
    ep = Endpointer(EndpointConfig())
    assert run(ep, "SSSS" + "." * 4, phrase_s=3.5) == [(3, OPEN), (7, SETTLE)]


def test_onset_includes_the_preroll_and_the_speech_run() -> None:
    ep = Endpointer(EndpointConfig(preroll_s=0.25))
    run(ep, "." * 20 + "SSSS")
    assert ep.onset == 24 * FRAME - int((4 * 0.032 + 0.25) * 16000)
    assert ep.last_speech_end == 24 * FRAME


@pytest.mark.parametrize(
    ("frames", "actions"),
    [
        ("", [Action.DECODE_UNHEARD]),  # nothing heard: decode anyway, VADs miss whispers
        ("SSSS", [SETTLE]),  # mid-phrase: the phrase ends at the commit
        ("SSSS....", [SETTLE]),
        ("SSSS" + "." * 10, []),  # already settled
    ],
)
def test_commit_from_every_state_returns_to_silence(frames: str, actions: list[Action]) -> None:
    ep = Endpointer(EndpointConfig())
    run(ep, frames)
    assert ep.commit(100_000) == actions
    assert ep.state is EndpointState.SILENCE
    assert ep.speech_run == ep.silence_run == 0.0
    if actions == [SETTLE]:
        assert ep.last_speech_end == 100_000  # the open phrase runs to the commit point


def test_the_cap_makes_a_commit_due_in_any_state() -> None:
    ep = Endpointer(EndpointConfig(max_uncommitted_s=90.0))
    assert ep.buffered(89.9) == []
    assert ep.buffered(90.0) == [COMMIT_DUE]
    run(ep, "SSSS")
    assert ep.buffered(90.0) == [COMMIT_DUE]
    assert ep.state is EndpointState.SPEECH  # due, not done: the recogniser commits


def test_the_table_is_closed() -> None:
    """Every state has a way back to silence (COMMIT) and a cap; onsets always lead to speech."""
    for state in EndpointState:
        assert TRANSITIONS[(state, Signal.COMMIT)][0] is EndpointState.SILENCE
        assert TRANSITIONS[(state, Signal.CAP)] == (state, COMMIT_DUE)
    for (_, signal), (target, _) in TRANSITIONS.items():
        if signal is Signal.ONSET:
            assert target is EndpointState.SPEECH
