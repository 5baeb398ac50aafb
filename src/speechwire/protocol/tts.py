"""The ElevenLabs ``stream-input`` TTS protocol, without I/O.

``TTSServerSession`` is the server side of one WebSocket: feed it each frame with the current time
and it returns events (``Generate``, ``InputEnded``) or raises ``ProtocolError``; the caller does the
sockets, the engines and the clock. Message shapes follow ``shared/protocol/elevenlabs.md`` §1.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.formats import AudioFormat, UnsupportedFormat
from speechwire.protocol.errors import ProtocolError, query_bool

DEFAULT_CHUNK_LENGTH_SCHEDULE: tuple[int, ...] = (120, 160, 250, 290)
DEFAULT_INACTIVITY_TIMEOUT_S = 20.0
MAX_INACTIVITY_TIMEOUT_S = 180.0
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
TRY_TRIGGER_MIN_CHARS = 50
"""``try_trigger_generation`` only generates past this many buffered characters (ElevenLabs' note)."""
AUTO_MODE_MAX_CHARS = 250
"""In ``auto_mode`` a run without punctuation is still generated once it is this long."""

INVALID_INPUT = "invalid_input_message"
INPUT_TIMEOUT = "input_timeout_exceeded"
MESSAGE_TOO_LARGE = "message_too_large"
INVALID_REQUEST = "invalid_request"
VOICE_NOT_FOUND = "voice_not_found"
MODEL_NOT_FOUND = "model_not_found"
UNSUPPORTED_OUTPUT_FORMAT = "unsupported_output_format"


@dataclass(frozen=True, slots=True)
class StreamInputParams:
    """The query parameters of ``/v1/text-to-speech/{voice_id}/stream-input`` that change behaviour.

    Parameters the local engines cannot honour (``enable_logging``, ``seed``…) are accepted and kept
    so that a relay can pass them on.
    """

    voice_id: str
    model_id: str | None = None
    output_format: AudioFormat = field(default_factory=lambda: AudioFormat.parse(DEFAULT_OUTPUT_FORMAT))
    language_code: str | None = None
    inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT_S
    sync_alignment: bool = False
    auto_mode: bool = False
    enable_logging: bool = True
    enable_ssml_parsing: bool = False
    apply_text_normalization: str = "auto"
    seed: int | None = None
    authorization: str | None = None
    single_use_token: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def from_query(voice_id: str, query: Mapping[str, str]) -> StreamInputParams:
        """Validate query parameters; a bad value is a ``ProtocolError`` the client is told about."""
        q = dict(query)
        try:
            fmt = AudioFormat.parse(q.pop("output_format", DEFAULT_OUTPUT_FORMAT))
        except UnsupportedFormat as exc:
            raise ProtocolError(UNSUPPORTED_OUTPUT_FORMAT, str(exc)) from exc
        timeout = DEFAULT_INACTIVITY_TIMEOUT_S
        if "inactivity_timeout" in q:
            raw = q.pop("inactivity_timeout")
            try:
                timeout = float(raw)
            except ValueError:
                raise ProtocolError(
                    INVALID_REQUEST, f"inactivity_timeout must be a number, got {raw!r}"
                ) from None
            if not 1 <= timeout <= MAX_INACTIVITY_TIMEOUT_S:
                raise ProtocolError(
                    INVALID_REQUEST,
                    f"inactivity_timeout must be between 1 and {MAX_INACTIVITY_TIMEOUT_S:g} seconds, "
                    f"got {raw}",
                )
        seed: int | None = None
        if "seed" in q:
            raw = q.pop("seed")
            if not (raw.isascii() and raw.isdigit()) or int(raw) > 4294967295:
                raise ProtocolError(INVALID_REQUEST, f"seed must be an integer 0..4294967295, got {raw!r}")
            seed = int(raw)
        normalization = q.pop("apply_text_normalization", "auto")
        if normalization not in ("auto", "on", "off"):
            raise ProtocolError(INVALID_REQUEST, "apply_text_normalization must be auto, on or off")
        flags = {
            name: query_bool(name, q.pop(name))
            for name in ("sync_alignment", "auto_mode", "enable_logging", "enable_ssml_parsing")
            if name in q
        }
        q.pop("optimize_streaming_latency", None)  # deprecated upstream; accepted and ignored
        return StreamInputParams(
            voice_id=voice_id,
            model_id=q.pop("model_id", None) or None,
            output_format=fmt,
            language_code=q.pop("language_code", None) or None,
            inactivity_timeout=timeout,
            seed=seed,
            apply_text_normalization=normalization,
            authorization=q.pop("authorization", None),
            single_use_token=q.pop("single_use_token", None),
            extra=q,
            **flags,
        )


class VoiceSettings(BaseModel):
    """``voice_settings`` of the first message. Local engines honour ``speed``; the rest is kept."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    stability: float | None = Field(default=None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(default=None, ge=0.0, le=1.0)
    style: float | None = Field(default=None, ge=0.0, le=1.0)
    use_speaker_boost: bool | None = None
    speed: float | None = Field(default=None, ge=0.7, le=1.2)

    @field_validator("stability", "similarity_boost", "style", "speed", mode="before")
    @classmethod
    def _ints_are_numbers(cls, value: Any) -> Any:
        # JSON has one number type: 1 and 1.0 are the same value to a client.
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    chunk_length_schedule: list[int] | None = None

    @field_validator("chunk_length_schedule")
    @classmethod
    def _schedule_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value:
                raise ValueError("chunk_length_schedule must not be empty")
            if any(not 50 <= v <= 500 for v in value):
                raise ValueError("every chunk_length_schedule value must be between 50 and 500")
        return value

    @field_validator("chunk_length_schedule", mode="before")
    @classmethod
    def _whole_floats(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        return value


class ClientTextMessage(BaseModel):
    """Every client frame of ``stream-input``: initialise, send text, flush, end (``text: ""``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    text: str
    try_trigger_generation: bool | None = None
    flush: bool | None = None
    voice_settings: VoiceSettings | None = None
    generation_config: GenerationConfig | None = None
    generator_config: GenerationConfig | None = None
    xi_api_key: str | None = Field(default=None, alias="xi-api-key")
    xi_api_key_underscore: str | None = Field(default=None, alias="xi_api_key")
    authorization: str | None = None
    pronunciation_dictionary_locators: list[dict[str, Any]] | None = None

    @property
    def api_key(self) -> str | None:
        """The key from either spelling (docs disagree: ``xi-api-key`` vs ``xi_api_key``)."""
        return self.xi_api_key or self.xi_api_key_underscore


def parse_client_message(
    frame: str | bytes, max_bytes: int, model: type[ClientTextMessage] | None = None
) -> ClientTextMessage:
    """Decode one client frame, or raise the ``ProtocolError`` that tells the client why not."""
    if isinstance(frame, bytes):
        raise ProtocolError(INVALID_INPUT, "Expected a JSON text frame, got a binary frame.")
    size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(
            MESSAGE_TOO_LARGE, f"Message of {size} bytes exceeds the limit of {max_bytes} bytes."
        )
    try:
        data = json.loads(frame)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(INVALID_INPUT, f"Message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_INPUT, "Message must be a JSON object.")
    try:
        return (model or ClientTextMessage).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ProtocolError(INVALID_INPUT, f"Invalid message: {problems}") from None


class TTSState(enum.Enum):
    """Server side of one ``stream-input`` socket."""

    AWAITING_INIT = "awaiting_init"
    STREAMING = "streaming"
    INPUT_ENDED = "input_ended"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Initialized:
    """The first message arrived: settings are now fixed for the life of the socket."""

    voice_settings: VoiceSettings | None
    chunk_length_schedule: tuple[int, ...]
    api_key: str | None
    authorization: str | None


@dataclass(frozen=True, slots=True)
class Generate:
    """Synthesise ``text`` now. ``flush`` says the client asked for it (end of a turn)."""

    text: str
    index: int
    flush: bool


@dataclass(frozen=True, slots=True)
class InputEnded:
    """The client sent ``{"text": ""}``: after the audio of every ``Generate``, send ``isFinal``."""


TTSEvent = Initialized | Generate | InputEnded

_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:—)"
_SENTENCE_AT_END = re.compile(r"[.!?…][\"'”’)\]]*\Z")


def _ends_sentence(text: str) -> bool:
    """Whether ``text`` ends a sentence right at its end: ``.!?…`` and any closing quotes or
    brackets, with no whitespace after them."""
    return bool(_SENTENCE_AT_END.search(text))


def _inside_tag(text: str, i: int) -> bool:
    """Whether position ``i`` is inside an SSML tag that is open at that point (``<break time=``):
    with SSML parsing on, a cut there would split the tag into text the engine reads aloud."""
    opening = text.rfind("<", 0, i)
    return opening >= 0 and text.find(">", opening, i) < 0


def _best_cut(buffer: str, threshold: int, ssml: bool = False) -> int:
    """Where to cut a buffer that reached its schedule threshold: never inside a word.

    Prefer the end of a sentence, then of a clause, as long as it keeps at least half the
    threshold, because engines phrase whole clauses better than arbitrary word runs.
    """
    spaces = [i for i, ch in enumerate(buffer) if ch.isspace() and not (ssml and _inside_tag(buffer, i))]
    last_space = max(spaces, default=-1)
    if last_space <= 0:
        return 0
    floor = threshold // 2
    for marks in (_SENTENCE_END, _CLAUSE_END):
        for i in reversed(spaces):
            if i < floor:
                break
            if i > 0 and buffer[i - 1] in marks:
                return i + 1
    return last_space + 1


class TTSServerSession:
    """Buffers text by the ``chunk_length_schedule`` and says when to synthesise what.

    The clock is an argument (``now``, in seconds, any monotonic origin), so tests can drive time.
    """

    def __init__(
        self,
        params: StreamInputParams,
        now: float,
        *,
        max_message_bytes: int = 1 << 20,
        max_buffer_chars: int = 100_000,
    ) -> None:
        self.params = params
        self.state = TTSState.AWAITING_INIT
        self.max_message_bytes = max_message_bytes
        self.max_buffer_chars = max_buffer_chars
        self.schedule: tuple[int, ...] = DEFAULT_CHUNK_LENGTH_SCHEDULE
        self.voice_settings: VoiceSettings | None = None
        self._buffer = ""
        self._joins: list[int] = []
        """Buffer offsets where one message ended a sentence and the next began without a space:
        a word boundary the engine must see, so the text is cut there (never sent as "there!I")."""
        self._generated = 0
        self._last_input = now

    @property
    def buffered_text(self) -> str:
        return self._buffer

    @property
    def deadline(self) -> float | None:
        """When the session times out for lack of input (None once input has ended)."""
        if self.state in (TTSState.INPUT_ENDED, TTSState.CLOSED):
            return None
        return self._last_input + self.params.inactivity_timeout

    def expire(self, now: float) -> list[TTSEvent]:
        """Past the deadline the session ends with ``input_timeout_exceeded`` (upstream's words);
        before it, nothing is due. Returns no events: a timeout is always the end."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self.state = TTSState.CLOSED
            raise ProtocolError(
                INPUT_TIMEOUT,
                "Have not received a new text input within the timeout of "
                f"{self.params.inactivity_timeout:g} "
                "seconds. Streaming input requires feeding text in a timely manner or sending the end of "
                "input text (an empty string) when done.",
            )
        return []

    def receive(self, frame: str | bytes, now: float) -> list[TTSEvent]:
        """Take one client frame; return what to do, or raise ``ProtocolError`` (then close)."""
        if self.state is TTSState.CLOSED:
            raise ProtocolError(INVALID_INPUT, "The stream is closed.")
        if self.state is TTSState.INPUT_ENDED:
            raise ProtocolError(INVALID_INPUT, "Input already ended with an empty text message.")
        try:
            return self.receive_message(parse_client_message(frame, self.max_message_bytes), now)
        except ProtocolError:
            self.state = TTSState.CLOSED
            raise

    def receive_message(self, message: ClientTextMessage, now: float) -> list[TTSEvent]:
        """Take one parsed message (the multi-context socket parses once, then routes here)."""
        try:
            self._last_input = now
            if self.state is TTSState.AWAITING_INIT:
                events: list[TTSEvent] = [self._initialise(message)]
                events.extend(self._first_text(message))
                return events
            return self._stream(message)
        except ProtocolError:
            self.state = TTSState.CLOSED
            raise

    def _initialise(self, message: ClientTextMessage) -> Initialized:
        if message.text == "":
            raise ProtocolError(
                INVALID_INPUT,
                'The first message must initialise the stream (text " ", or the first text); '
                "an empty text would end input before it started.",
            )
        config = message.generation_config or message.generator_config
        if config is not None and config.chunk_length_schedule is not None:
            self.schedule = tuple(config.chunk_length_schedule)
        self.voice_settings = message.voice_settings
        self.state = TTSState.STREAMING
        return Initialized(message.voice_settings, self.schedule, message.api_key, message.authorization)

    def _first_text(self, message: ClientTextMessage) -> list[TTSEvent]:
        """The text a first message carries beside the settings (the websockets guide's own
        example sends ``"Hello world. "`` first): buffered like any later text. The conventional
        ``" "`` voices nothing and is not part of the text that alignment covers."""
        if not message.text.strip() and not message.flush:
            return []
        return self._stream(message)

    def _stream(self, message: ClientTextMessage) -> list[TTSEvent]:
        if message.voice_settings is not None and message.voice_settings != self.voice_settings:
            raise ProtocolError(
                INVALID_INPUT,
                "voice_settings field must be provided in the first message and then either be not "
                "provided or not change.",
            )
        if message.text == "":
            events: list[TTSEvent] = self._generate_all(flush=True)
            self._buffer = ""
            self.state = TTSState.INPUT_ENDED
            events.append(InputEnded())
            return events
        self._append(message.text)
        if len(self._buffer) > self.max_buffer_chars:
            raise ProtocolError(
                MESSAGE_TOO_LARGE,
                f"More than {self.max_buffer_chars} characters buffered without generation; send flush.",
            )
        if message.flush:
            return self._generate_all(flush=True)
        return self._generate_by_schedule(bool(message.try_trigger_generation))

    def _append(self, text: str) -> None:
        if text and not text[0].isspace() and _ends_sentence(self._buffer):
            self._joins.append(len(self._buffer))
        self._buffer += text

    def _emit(self, cut: int, flush: bool) -> list[TTSEvent]:
        text, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if not text.strip():
            # Whitespace alone makes no sound: keep it so alignment still covers every character.
            self._buffer = text + self._buffer
            return []
        bounds = [j for j in self._joins if 0 < j < cut]
        self._joins = [j - cut for j in self._joins if j > cut]
        events: list[TTSEvent] = []
        start = 0
        for end in [*bounds, cut]:
            # Each part is its own Generate: the client's characters are untouched (alignment
            # still concatenates to exactly what was sent) and the engine hears two sentences.
            events.append(Generate(text[start:end], self._generated, flush))
            self._generated += 1
            start = end
        return events

    def _generate_all(self, flush: bool) -> list[TTSEvent]:
        return self._emit(len(self._buffer), flush)

    def _generate_by_schedule(self, try_trigger: bool) -> list[TTSEvent]:
        events: list[TTSEvent] = []
        while True:
            if self.params.auto_mode:
                threshold = 1
                cut = self._auto_cut()
            else:
                threshold = self.schedule[min(self._generated, len(self.schedule) - 1)]
                if try_trigger:
                    threshold = min(threshold, TRY_TRIGGER_MIN_CHARS)
                cut = (
                    _best_cut(self._buffer, threshold, self.params.enable_ssml_parsing)
                    if len(self._buffer.strip()) >= threshold
                    else 0
                )
            if cut <= 0:
                return events
            emitted = self._emit(cut, flush=False)
            if not emitted:
                return events
            events.extend(emitted)

    def _auto_cut(self) -> int:
        """``auto_mode``: generate each complete sentence or clause as soon as it is there.

        A buffer that ends a sentence (the message just received did) is generated whole at
        once: auto-mode clients send one sentence per message, often with no trailing space.
        """
        buf = self._buffer
        ssml = self.params.enable_ssml_parsing
        if _ends_sentence(buf) and not (ssml and _inside_tag(buf, len(buf))):
            return len(buf)
        for i in range(len(buf) - 1, 0, -1):
            marked = buf[i].isspace() and buf[i - 1] in _SENTENCE_END + _CLAUSE_END
            if marked and not (ssml and _inside_tag(buf, i)):
                return i + 1
        if len(buf) >= AUTO_MODE_MAX_CHARS:
            return _best_cut(buf, AUTO_MODE_MAX_CHARS, ssml)
        return 0


def alignment_json(alignment: CharAlignment) -> dict[str, list[Any]]:
    """The WebSocket alignment shape: ``chars``, ``charStartTimesMs``, ``charDurationsMs``."""
    return {
        "chars": list(alignment.chars),
        "charStartTimesMs": list(alignment.start_ms),
        "charDurationsMs": list(alignment.duration_ms),
    }


def audio_message(
    audio: bytes, alignment: CharAlignment | None, normalized: CharAlignment | None = None
) -> dict[str, Any]:
    """An ``AudioOutput`` frame. Alignment times are relative to this chunk, as upstream does."""
    msg: dict[str, Any] = {"audio": base64.b64encode(audio).decode("ascii")}
    if alignment is not None:
        msg["alignment"] = alignment_json(alignment)
        msg["normalizedAlignment"] = alignment_json(normalized if normalized is not None else alignment)
    return msg


FINAL_MESSAGE: dict[str, Any] = {"isFinal": True}
