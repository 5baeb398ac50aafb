"""What an engine is: the protocols every engine implements, the values they exchange, and the
once-only model loading they share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from speechwire.audio.alignment import CharAlignment

AlignmentSource = Literal["engine", "estimate"]


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """A voice an engine can speak with, as listed by ``GET /v1/voices``."""

    voice_id: str
    name: str
    engine: str
    language: str
    """A BCP-47 tag (``en-US``, ``fr-FR``, ``zh``)."""
    sample_rate: int
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    language_name: str = ""
    """The language in English (``French``), for ``GET /v1/models``; empty: not known."""

    @property
    def language_code(self) -> str:
        """The tag's language subtag, lowercased (``fr``): what a ``language_code`` matches."""
        return primary_language(self.language)


def primary_language(tag: str) -> str:
    """The language subtag of a BCP-47 tag or ISO 639 code, lowercased: ``pt-BR`` -> ``pt``."""
    return tag.strip().replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True, slots=True)
class SynthesisOptions:
    """Per-request knobs that engines honour where they can (others are accepted and ignored)."""

    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class Synthesis:
    """Mono int16 audio for one piece of text, with the timing of each of its characters.

    ``alignment.chars`` concatenate to exactly the text passed in (whitespace included);
    ``alignment_source`` says whether the timing came from the engine or is an estimate.
    """

    pcm: npt.NDArray[np.int16]
    sample_rate: int
    alignment: CharAlignment
    alignment_source: AlignmentSource

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / self.sample_rate


@runtime_checkable
class TTSEngine(Protocol):
    """A local text-to-speech engine.

    ``synthesize`` blocks and must be safe to call from worker threads; engines that are not
    thread-safe serialise internally. Each engine uses an explicit thread budget so that several
    engines and sessions share the machine's cores predictably.
    """

    name: str

    def voices(self) -> list[VoiceInfo]: ...

    def load(self) -> None:
        """Load models now (idempotent), so the first request does not pay for it."""
        ...

    def synthesize(self, text: str, voice_id: str, options: SynthesisOptions) -> Synthesis: ...


class RecognizedWord(NamedTuple):
    """A word and its times: relative to the decoded audio in a ``Recognition``, in stream time in
    a commit. A tuple, because that is the shape the protocol serialises (``TimedWord``)."""

    text: str
    start_s: float
    end_s: float
    logprob: float | None = None
    """Natural log of the engine's word probability, when it reports one (Scribe's ``logprob``)."""


@dataclass(frozen=True, slots=True)
class Recognition:
    """Text of one stretch of 16 kHz audio; ``words`` carry times relative to that audio when the
    engine reports them (else empty)."""

    text: str
    words: tuple[RecognizedWord, ...]
    decode_ms: float


@runtime_checkable
class STTEngine(Protocol):
    """A local speech recogniser for whole stretches of 16 kHz mono audio.

    ``recognize`` blocks and must be safe to call from worker threads (engines serialise
    internally where their runtime is not).
    """

    name: str
    languages: frozenset[str]
    """The ISO 639-1 codes it hears: routing sends a session only to an engine that hears it."""

    def load(self) -> None: ...

    def recognize(
        self, pcm16k: npt.NDArray[np.int16], language: str | None = None, word_timestamps: bool = False
    ) -> Recognition: ...


@runtime_checkable
class LanguageDetector(Protocol):
    """An engine that can say which language a stretch of speech is in (Whisper's multilingual
    model): sessions without ``language_code`` are routed by it."""

    languages: frozenset[str]

    def detect_language(self, pcm16k: npt.NDArray[np.int16]) -> tuple[str, float]:
        """(code, probability): the code is one of ``languages``; blocks (run it on a pool)."""
        ...


T = TypeVar("T")


class Lazy(Generic[T]):
    """A model built on first use, exactly once even when worker threads race for it.

    Loading takes seconds and memory: ``load()`` calls it ahead of the first request, and every
    call path goes through ``get()`` so a request that comes first still finds one model."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


def onnx_session(model: str | bytes, threads: int, log_level: int = 2) -> Any:
    """An onnxruntime CPU session on exactly ``threads`` cores: by default onnxruntime takes every
    core, which starves the event loop and the other engines."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = log_level
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


_PUNCT = ",.;:!?…"


def join_texts(pieces: Iterable[str]) -> str:
    """Join the texts of consecutive decodes of one stream into one transcript.

    A decode that starts inside a sentence often begins with the punctuation that ends the
    previous piece (``"Sir,"`` then ``", I exist."``): a plain ``" ".join`` gives "Sir, , I exist."
    and, collapsed, "Sir,, I exist.". Punctuation at the start of a piece belongs to the piece
    before it: it is dropped when that piece already ends in punctuation, else attached to it
    without a space. Empty pieces vanish.
    """
    out = ""
    for raw in pieces:
        piece = raw.strip()
        if not out:
            out = piece.lstrip(_PUNCT + " ")
            continue
        stripped = piece.lstrip(_PUNCT + " ")
        lead = piece[: len(piece) - len(stripped)].replace(" ", "")
        if lead and out[-1] not in _PUNCT:
            out += lead[0]
        if stripped:
            out += " " + stripped
    return out
