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
from speechwire.protocol.errors import ProtocolError, TTSError, query_bool

DEFAULT_CHUNK_LENGTH_SCHEDULE: tuple[int, ...] = (120, 160, 250, 290)
DEFAULT_INACTIVITY_TIMEOUT_S = 20.0
MAX_INACTIVITY_TIMEOUT_S = 180.0
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
TRY_TRIGGER_MIN_CHARS = 50
"""``try_trigger_generation`` only generates past this many buffered characters (ElevenLabs' note)."""
AUTO_MODE_MAX_CHARS = 250
"""In ``auto_mode`` a run without punctuation is still generated once it is this long."""

MAX_UNCUT_CHARS = 1_000
"""A run this long with no word boundary (no space: a URL, a hash, CJK text) is cut here anyway,
so such text is voiced in pieces instead of piling up until ``max_buffer_chars``."""


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(TTSError.INVALID_REQUEST, message)


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
            raise ProtocolError(TTSError.UNSUPPORTED_OUTPUT_FORMAT, str(exc)) from exc
        timeout = DEFAULT_INACTIVITY_TIMEOUT_S
        if "inactivity_timeout" in q:
            raw = q.pop("inactivity_timeout")
            try:
                timeout = float(raw)
            except ValueError:
                raise _invalid(f"inactivity_timeout must be a number, got {raw!r}") from None
            if not 1 <= timeout <= MAX_INACTIVITY_TIMEOUT_S:
                limit = f"between 1 and {MAX_INACTIVITY_TIMEOUT_S:g} seconds"
                raise _invalid(f"inactivity_timeout must be {limit}, got {raw}")
        seed: int | None = None
        if "seed" in q:
            raw = q.pop("seed")
            if not (raw.isascii() and raw.isdigit()) or int(raw) > 4294967295:
                raise _invalid(f"seed must be an integer 0..4294967295, got {raw!r}")
            seed = int(raw)
        normalization = q.pop("apply_text_normalization", "auto")
        if normalization not in ("auto", "on", "off"):
            raise _invalid("apply_text_normalization must be auto, on or off")
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
        raise ProtocolError(TTSError.INVALID_INPUT, "Expected a JSON text frame, got a binary frame.")
    size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(
            TTSError.MESSAGE_TOO_LARGE, f"Message of {size} bytes exceeds the limit of {max_bytes} bytes."
        )
    try:
        data = json.loads(frame)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(TTSError.INVALID_INPUT, f"Message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(TTSError.INVALID_INPUT, "Message must be a JSON object.")
    try:
        return (model or ClientTextMessage).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ProtocolError(TTSError.INVALID_INPUT, f"Invalid message: {problems}") from None


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
_CLOSERS = "\"'”’)]"
_SCANNED = re.compile(r"[\s<>]")
_SPACE = re.compile(r"\s")
_AFTER_SENTENCE = re.compile(rf"\s[{_SENTENCE_END}]")  # reversed: whitespace, then the mark before it
_AFTER_CLAUSE = re.compile(rf"\s[{_CLAUSE_END}]")
_LEADING_SPACE = re.compile(r"\s*")


def _shift(position: int, cut: int) -> int:
    return position - cut if position >= cut else -1


class TextBuffer:
    """Text not yet given to synthesis, with what the cut search needs kept up to date as it
    arrives: the last word boundary, the last one after a sentence and after a clause, an open
    SSML tag, whether the text ends a sentence. Each frame costs time in proportion to its own
    length, never to the buffer's (issue 14: rescanning 95,000 characters for every 13-byte
    frame stalled the event loop for every session). Positions are offsets in ``text``, -1 for
    none; a boundary is a whitespace character outside an open tag (with SSML parsing on)."""

    def __init__(self, ssml: bool) -> None:
        self.ssml = ssml
        self.text = ""
        self.joins: list[int] = []
        """Offsets where one message ended a sentence and the next began without a space: a
        word boundary the engine must see, so the text is cut there (never sent as "there!I")."""
        self.space = self.sentence = self.clause = self.tag = self.ends = self.last_text = -1
        self.lead = 0  # leading whitespace characters

    def append(self, chunk: str) -> None:
        start = len(self.text)
        if chunk and not chunk[0].isspace() and self.ends >= 0:
            self.joins.append(start)
        self.text += chunk
        if self.ssml:
            self._scan_with_tags(chunk, start)
        else:
            self._scan_plain(chunk, start)
        body = chunk.rstrip(_CLOSERS)  # a sentence ends at .!?… and any closing quotes after it
        if body:
            self.ends = start + len(body) - 1 if body[-1] in _SENTENCE_END else -1
        if stripped := chunk.rstrip():
            self.last_text = start + len(stripped) - 1
        if self.lead == start:
            self.lead += _LEADING_SPACE.match(chunk).end()  # type: ignore[union-attr]

    def _scan_plain(self, chunk: str, start: int) -> None:
        """Only the last boundaries matter, so they are searched for from the end, in C (a
        reversed copy and one regular expression): a 100,000-character frame costs the loop about
        a millisecond, not 20 ms of Python per whitespace character."""
        if not chunk:
            return
        # Reversed, a boundary is whitespace followed by its mark; the frame's first character
        # follows the previous frame's last one (the "\0" stands for none).
        tail = chunk[::-1] + (self.text[start - 1] if start else "\0")
        if (space := _SPACE.search(tail)) is None or space.start() == len(chunk):
            return
        end = start + len(chunk) - 1
        self.space = end - space.start()
        if found := _AFTER_SENTENCE.search(tail, space.start()):
            self.sentence = end - found.start()
        if found := _AFTER_CLAUSE.search(tail, space.start()):
            self.clause = end - found.start()

    def _scan_with_tags(self, chunk: str, start: int) -> None:
        """SSML: whitespace inside an open tag is no boundary, so the characters are walked in
        order (still in proportion to the frame; only sessions that asked for SSML parsing)."""
        for match in _SCANNED.finditer(chunk):
            ch, i = match.group(), start + match.start()
            if ch in "<>":
                self.tag = i if ch == "<" else -1
            elif self.tag < 0:
                self.space = i
                before = self.text[i - 1] if i > 0 else "\0"
                if before in _SENTENCE_END:
                    self.sentence = i
                elif before in _CLAUSE_END:
                    self.clause = i

    @property
    def stripped_len(self) -> int:
        """``len(text.strip())``, without scanning."""
        return self.last_text - self.lead + 1 if self.last_text >= 0 else 0

    @property
    def in_tag(self) -> bool:
        return self.ssml and self.tag >= 0

    def take(self, cut: int) -> tuple[str, list[int]]:
        """The first ``cut`` characters and the joins inside them; the rest stays."""
        text, self.text = self.text[:cut], self.text[cut:]
        bounds = [j for j in self.joins if 0 < j < cut]
        self.joins = [j - cut for j in self.joins if j > cut]
        self.space, self.sentence, self.clause = (
            _shift(p, cut) for p in (self.space, self.sentence, self.clause)
        )
        self.tag, self.ends, self.last_text = (_shift(p, cut) for p in (self.tag, self.ends, self.last_text))
        self.lead = _LEADING_SPACE.match(self.text).end()  # type: ignore[union-attr]
        return text, bounds

    def best_cut(self, threshold: int) -> int:
        """Where to cut a buffer that reached its schedule threshold: never inside a word.

        Prefer the end of a sentence, then of a clause, as long as it keeps at least half the
        threshold, because engines phrase whole clauses better than arbitrary word runs. A
        buffer with no boundary past its leading blanks is cut at ``MAX_UNCUT_CHARS`` anyway.
        """
        if self.space < self.lead:
            return MAX_UNCUT_CHARS if len(self.text) >= MAX_UNCUT_CHARS else 0
        for marked in (self.sentence, self.clause):
            if marked >= threshold // 2:
                return marked + 1
        return self.space + 1

    def auto_cut(self) -> int:
        """``auto_mode``: generate each complete sentence or clause as soon as it is there.

        A buffer that ends a sentence (the message just received did) is generated whole at
        once: auto-mode clients send one sentence per message, often with no trailing space.
        """
        if self.ends >= 0 and not self.in_tag:
            return len(self.text)
        if (marked := max(self.sentence, self.clause)) > 0:
            return marked + 1
        return self.best_cut(AUTO_MODE_MAX_CHARS) if len(self.text) >= AUTO_MODE_MAX_CHARS else 0


class StreamSession:
    """What both TTS sessions hold: the query's parameters, the frame and buffer bounds, and
    when the last frame came (their inactivity clock)."""

    def __init__(
        self,
        params: StreamInputParams,
        now: float,
        *,
        max_message_bytes: int = 1 << 20,
        max_buffer_chars: int = 100_000,
    ) -> None:
        self.params = params
        self.max_message_bytes = max_message_bytes
        self.max_buffer_chars = max_buffer_chars
        self._last_input = now


class TTSServerSession(StreamSession):
    """Buffers text by the ``chunk_length_schedule`` and says when to synthesise what.

    The clock is an argument (``now``, in seconds, any monotonic origin), so tests can drive time.
    """

    empty_first_text_ends = True
    """An empty first text is an error here (it would end input); a context takes it as a start."""

    def __init__(self, params: StreamInputParams, now: float, **limits: int) -> None:
        super().__init__(params, now, **limits)
        self.state = TTSState.AWAITING_INIT
        self.schedule: tuple[int, ...] = DEFAULT_CHUNK_LENGTH_SCHEDULE
        self.voice_settings: VoiceSettings | None = None
        self._buffer = TextBuffer(params.enable_ssml_parsing)
        self._generated = 0

    @property
    def buffered_text(self) -> str:
        return self._buffer.text

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
                TTSError.INPUT_TIMEOUT,
                "Have not received a new text input within the timeout of "
                f"{self.params.inactivity_timeout:g} "
                "seconds. Streaming input requires feeding text in a timely manner or sending the end of "
                "input text (an empty string) when done.",
            )
        return []

    def receive(self, frame: str | bytes, now: float) -> list[TTSEvent]:
        """Take one client frame; return what to do, or raise ``ProtocolError`` (then close)."""
        if self.state is TTSState.CLOSED:
            raise ProtocolError(TTSError.INVALID_INPUT, "The stream is closed.")
        if self.state is TTSState.INPUT_ENDED:
            raise ProtocolError(TTSError.INVALID_INPUT, "Input already ended with an empty text message.")
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
        if message.text == "" and self.empty_first_text_ends:
            raise ProtocolError(
                TTSError.INVALID_INPUT,
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
                TTSError.INVALID_INPUT,
                "voice_settings field must be provided in the first message and then either be not "
                "provided or not change.",
            )
        if message.text == "":
            events: list[TTSEvent] = self._generate_all(flush=True)
            self._buffer = TextBuffer(self.params.enable_ssml_parsing)
            self.state = TTSState.INPUT_ENDED
            events.append(InputEnded())
            return events
        self._buffer.append(message.text)
        if len(self._buffer.text) > self.max_buffer_chars:
            raise ProtocolError(
                TTSError.MESSAGE_TOO_LARGE,
                f"More than {self.max_buffer_chars} characters buffered without generation; send flush.",
            )
        if message.flush:
            return self._generate_all(flush=True)
        return self._generate_by_schedule(bool(message.try_trigger_generation))

    def _emit(self, cut: int, flush: bool) -> list[TTSEvent]:
        if cut <= self._buffer.lead:
            return []  # whitespace alone makes no sound: kept, so alignment covers every character
        text, bounds = self._buffer.take(cut)
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
        return self._emit(len(self._buffer.text), flush)

    def _generate_by_schedule(self, try_trigger: bool) -> list[TTSEvent]:
        events: list[TTSEvent] = []
        while True:
            if self.params.auto_mode:
                cut = self._buffer.auto_cut()
            else:
                threshold = self.schedule[min(self._generated, len(self.schedule) - 1)]
                if try_trigger:
                    threshold = min(threshold, TRY_TRIGGER_MIN_CHARS)
                fits = self._buffer.stripped_len >= threshold or len(self._buffer.text) >= MAX_UNCUT_CHARS
                cut = self._buffer.best_cut(threshold) if fits else 0
            emitted = self._emit(cut, flush=False) if cut > 0 else []
            if not emitted:
                return events
            events.extend(emitted)


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
