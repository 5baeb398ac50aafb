"""STT end-pointing: when speech starts, when a phrase settles, when a commit is due.

Everything that affects these decisions lives in this file (h11's ``_state.py`` rule): the
states, the signals that move between them, and the transition table as data. It is sans-I/O
and knows nothing of decoding: ``StreamingRecognizer`` feeds it one VAD probability per 32 ms
frame (and the clock, as sample positions), and acts on the ``Action`` values it returns —
opening a phrase, decoding a settled one, committing.

States::

    SILENCE  — no speech since the last commit (the audio before an onset is kept only as pre-roll)
    SPEECH   — someone speaks; the open phrase grows (partials are decoded only here)
    PAUSE    — speech stopped (``min_silence_s``); the phrase is still open
    SETTLED  — the pause was long enough (``settle_pause``): the phrase was handed off for decoding

Signals, each computed from the VAD run lengths::

    ONSET        speech for ``min_speech_s`` while not speaking
    SPEECH_END   silence for ``min_silence_s`` while speaking
    SETTLE       silence for the settle pause (shorter once a phrase is long) with a phrase open
    END_OF_TURN  silence for ``silence_commit_s`` after speech, with ``commit_on_vad``
    CAP          ``max_uncommitted_s`` of audio buffered (upstream commits at 90 s)
    COMMIT       a commit happens (manual, END_OF_TURN or CAP)

A probability between the two thresholds (hysteresis: ``vad_threshold`` for speech,
``vad_threshold - 0.15`` for silence) extends neither run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from speechwire.engines.vad import FRAME

RATE = 16000
FRAME_S = FRAME / RATE


class EndpointState(enum.Enum):
    SILENCE = "silence"
    SPEECH = "speech"
    PAUSE = "pause"
    SETTLED = "settled"


class Signal(enum.Enum):
    ONSET = "onset"
    SPEECH_END = "speech_end"
    SETTLE = "settle"
    END_OF_TURN = "end_of_turn"
    CAP = "cap"
    COMMIT = "commit"


class Action(enum.Enum):
    """What the recogniser must do."""

    OPEN_PHRASE = "open_phrase"
    """A phrase starts at ``Endpointer.onset`` (pre-roll included)."""
    SETTLE_PHRASE = "settle_phrase"
    """Decode the open phrase up to ``Endpointer.last_speech_end`` (plus tail) and keep it."""
    COMMIT_DUE = "commit_due"
    """Commit now (``commit_on_vad`` end of turn, or the cap)."""
    DECODE_UNHEARD = "decode_unheard"
    """A commit found no speech: decode what is buffered anyway — VADs miss whispers."""


S, G, A = EndpointState, Signal, Action
TRANSITIONS: dict[tuple[EndpointState, Signal], tuple[EndpointState, Action | None]] = {
    (S.SILENCE, G.ONSET): (S.SPEECH, A.OPEN_PHRASE),
    (S.SETTLED, G.ONSET): (S.SPEECH, A.OPEN_PHRASE),
    (S.PAUSE, G.ONSET): (S.SPEECH, None),  # the pause was short: the same phrase goes on
    (S.SPEECH, G.SPEECH_END): (S.PAUSE, None),
    (S.PAUSE, G.SETTLE): (S.SETTLED, A.SETTLE_PHRASE),
    (S.PAUSE, G.END_OF_TURN): (S.PAUSE, A.COMMIT_DUE),
    (S.SETTLED, G.END_OF_TURN): (S.SETTLED, A.COMMIT_DUE),
    **{(state, G.CAP): (state, A.COMMIT_DUE) for state in S},
    (S.SILENCE, G.COMMIT): (S.SILENCE, A.DECODE_UNHEARD),
    (S.SPEECH, G.COMMIT): (S.SILENCE, A.SETTLE_PHRASE),
    (S.PAUSE, G.COMMIT): (S.SILENCE, A.SETTLE_PHRASE),
    (S.SETTLED, G.COMMIT): (S.SILENCE, None),
}
"""(state, signal) → (next state, action). A pair not listed is a signal the state ignores."""
del S, G, A


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    commit_on_vad: bool = False
    vad_threshold: float = 0.4
    silence_commit_s: float = 1.5
    """Silence after speech that ends an utterance (``vad_silence_threshold_secs``)."""
    min_speech_s: float = 0.1
    min_silence_s: float = 0.1
    settle_pause_s: float = 0.3
    """A pause this long inside an utterance settles the phrase before it (decoded once, kept)."""
    long_phrase_s: float = 3.0
    """Past this length a phrase settles at any short pause (two VAD frames)."""
    preroll_s: float = 0.25
    """Audio kept before detected speech: VAD reacts a frame or two late and onsets are quiet."""
    max_uncommitted_s: float = 90.0
    """Upstream commits on its own after 90 s of uncommitted audio; so do we."""


class Endpointer:
    """One stream's end-pointing state. Positions are absolute sample indices at 16 kHz."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.state = EndpointState.SILENCE
        self.speech_run = 0.0
        self.silence_run = 0.0
        self.last_speech_end = 0
        """Where the VAD last heard speech (extended to the commit point by a commit mid-phrase)."""
        self.onset = 0
        """Where the phrase opened by the last ``OPEN_PHRASE`` starts (before any floor)."""

    def _signal(self, signal: Signal) -> list[Action]:
        entry = TRANSITIONS.get((self.state, signal))
        if entry is None:
            return []
        self.state, action = entry
        return [] if action is None else [action]

    def settle_pause(self, phrase_s: float) -> float:
        """Pause that settles a phrase ``phrase_s`` long: shorter as the phrase grows, so that no
        decode (partial or final) ever covers much more than a few seconds of audio."""
        cfg = self.config
        pause = min(cfg.settle_pause_s, 0.6 * cfg.silence_commit_s)
        return min(pause, 2 * FRAME_S) if phrase_s > cfg.long_phrase_s else pause

    def frame(self, prob: float, frame_end: int, phrase_s: float) -> list[Action]:
        """One VAD frame ending at ``frame_end``; ``phrase_s`` is the open phrase's length so far."""
        cfg = self.config
        actions: list[Action] = []
        if prob >= cfg.vad_threshold:
            self.speech_run += FRAME_S
            self.silence_run = 0.0
            if self.state is not EndpointState.SPEECH and self.speech_run >= cfg.min_speech_s:
                self.onset = frame_end - int((self.speech_run + cfg.preroll_s) * RATE)
                actions += self._signal(Signal.ONSET)
            if self.state is EndpointState.SPEECH:
                self.last_speech_end = frame_end
        elif prob < max(0.05, cfg.vad_threshold - 0.15):
            self.silence_run += FRAME_S
            self.speech_run = 0.0
            if self.state is EndpointState.SPEECH and self.silence_run >= cfg.min_silence_s:
                actions += self._signal(Signal.SPEECH_END)
            if self.state is EndpointState.PAUSE and self.silence_run >= self.settle_pause(phrase_s):
                actions += self._signal(Signal.SETTLE)
            if cfg.commit_on_vad and self.silence_run >= cfg.silence_commit_s:
                actions += self._signal(Signal.END_OF_TURN)
        return actions

    def buffered(self, seconds: float) -> list[Action]:
        """``seconds`` of audio are buffered uncommitted: past the cap a commit is due."""
        return self._signal(Signal.CAP) if seconds >= self.config.max_uncommitted_s else []

    def commit(self, total: int) -> list[Action]:
        """A commit at sample ``total`` (manual, end of turn or cap): an open phrase ends there."""
        if self.state in (EndpointState.SPEECH, EndpointState.PAUSE):
            self.last_speech_end = max(self.last_speech_end, total)
        self.speech_run = self.silence_run = 0.0
        return self._signal(Signal.COMMIT)
