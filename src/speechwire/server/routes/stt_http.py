"""``POST /v1/speech-to-text``: batch Scribe (``speech_to_text.convert`` in both SDKs) on local engines.

The upload is a ``multipart/form-data`` body with a ``file`` and form fields (``model_id``,
``language_code``, ``diarize``, ``timestamps_granularity``, …), as the SDKs send it. The file may
be anything PyAV decodes (WAV, MP3, FLAC, Ogg, WebM, MP4…) or, with ``file_format=pcm_s16le_16``,
raw 16 kHz PCM. It is decoded, cut into speech segments with Silero VAD (each short enough for
the engine: local recognisers decode a window, not an hour) and the segments are transcribed on
the STT pool, behind realtime work, so a long upload never stalls a live stream.

The form is parsed here rather than with ``request.form()`` because that needs
``python-multipart``, which is not a dependency; the parser reads one bounded body.

Errors use the HTTP API's shape, ``{"detail": {"status", "message"}}``: 413 for an oversize body,
422 for a malformed request (wrong content type, missing field), 400 for a file that holds no
decodable audio or a feature that is not served locally.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from speechwire.audio.codecs import decode_with_av
from speechwire.audio.resample import resample
from speechwire.engines.base import Recognition, RecognizedWord
from speechwire.engines.languages import EngineChoice, NoEngine, STTRouter, report_code
from speechwire.engines.streaming import words_of
from speechwire.engines.vad import FRAME, SileroVAD
from speechwire.server.access.auth import http_caller, limited
from speechwire.server.relay import relay_http, relays
from speechwire.server.routes.tts_http import error_response, refused_response
from speechwire.server.state import ServerState, server_state

router = APIRouter()
log = logging.getLogger("speechwire.stt")

RATE = 16_000
BATCH_MODELS = ("scribe_v1", "scribe_v1_experimental", "scribe_v2", "scribe_v2_realtime")
"""Cloud model ids accepted for batch transcription; each selects a local engine."""
BATCH_DEADLINE_S = 2.0
"""Pool deadline of batch work: behind realtime commits (now) and partials (1 s)."""
MAX_SEGMENT_S = {"whisper": 28.0}
"""Longest stretch one decode gets: Whisper's window is 30 s; other engines get ``DEFAULT_SEGMENT_S``."""
DEFAULT_SEGMENT_S = 15.0
CONTINUES = "-'’.,;:!?%)]}"
"""A word token starting with one of these continues the previous word (no space before it)."""


class BadRequest(Exception):
    """A refusal in the HTTP API's shape, raised anywhere below the route."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ---- the multipart body ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a ``multipart/form-data`` body (RFC 7578), or ``BadRequest`` saying why not."""
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        raise BadRequest(
            422,
            "invalid_content_type",
            "Send multipart/form-data with the audio in a 'file' field and a 'model_id' field.",
        )
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadRequest(422, "invalid_content_type", "multipart/form-data without a boundary.")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    pieces = (b"\r\n" + body).split(delimiter)
    parts: list[Part] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return parts
        head, sep, data = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            break
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        field = headers.get_param("name", header="content-disposition")
        if not isinstance(field, str):
            continue
        parts.append(Part(field, data))
    raise BadRequest(422, "invalid_request", "The multipart/form-data body is malformed or truncated.")


class BatchForm(BaseModel):
    """The form fields this server acts on; every other field upstream defines is accepted."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    language_code: str | None = None
    diarize: bool = False
    num_speakers: int | None = None
    timestamps_granularity: Literal["none", "word", "character"] = "word"
    file_format: Literal["pcm_s16le_16", "other"] = "other"
    cloud_storage_url: str | None = None
    source_url: str | None = None
    webhook: bool = False
    tag_audio_events: bool = True


_IGNORED_LOGGED: set[str] = set()


def _form(parts: list[Part]) -> tuple[BatchForm, Part | None]:
    fields: dict[str, str] = {}
    upload = None
    for part in parts:
        if part.name == "file":
            upload = part
        elif part.name not in fields:
            fields[part.name] = part.data.decode("utf-8", "replace")
    try:  # SDKs send "null" or an empty string for some options the caller left out
        form = BatchForm.model_validate({k: v for k, v in fields.items() if v not in ("", "null")})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise BadRequest(422, "invalid_request", problems) from None
    for name in sorted(set(form.model_extra or {}) - _IGNORED_LOGGED):
        _IGNORED_LOGGED.add(name)
        log.info("speech-to-text: form field %r accepted and ignored (not served locally)", name)
    return form, upload


# ---- audio -------------------------------------------------------------------------------------


def decode_upload(data: bytes, file_format: str) -> npt.NDArray[np.int16]:
    """Mono 16 kHz int16 audio of an uploaded file, or ``BadRequest`` when it holds none."""
    if not data:
        raise BadRequest(400, "invalid_audio", "The uploaded file is empty.")
    if file_format == "pcm_s16le_16":
        return np.frombuffer(data[: len(data) - len(data) % 2], "<i2").astype(np.int16)
    try:
        pcm, rate = decode_with_av(data)  # WAV, MP3, FLAC, Ogg, WebM, MP4…: whatever FFmpeg reads
    except Exception as exc:  # PyAV raises many types for data that is not media
        raise BadRequest(
            400, "invalid_audio", f"The uploaded file could not be decoded as audio ({type(exc).__name__})."
        ) from None
    if len(pcm) == 0 or rate <= 0:
        raise BadRequest(400, "invalid_audio", "The uploaded file contains no audio.")
    return resample(pcm, rate, RATE) if rate != RATE else pcm


def speech_segments(
    pcm16k: npt.NDArray[np.int16], max_s: float, probabilities: npt.NDArray[np.float32] | None = None
) -> list[tuple[int, int]]:
    """Sample ranges to decode: Silero VAD's speech regions, padded, split where longer than
    ``max_s`` (at the quietest frame of the second half) and packed together up to ``max_s``,
    so a long file costs few decodes and none is longer than the engine takes."""
    probs = SileroVAD().probabilities(pcm16k) if probabilities is None else probabilities
    regions: list[list[int]] = []  # frame ranges: speech starts at 0.5, lasts while >= 0.35
    inside = False
    for i, p in enumerate(probs):
        inside = p >= (0.35 if inside else 0.5)
        if inside and regions and i - regions[-1][1] < 10:  # gaps under 320 ms are inside a phrase
            regions[-1][1] = i + 1
        elif inside:
            regions.append([i, i + 1])
    limit = max(2, int(max_s * RATE / FRAME))
    split: list[tuple[int, int]] = []
    for first, last in regions:
        a, b = max(0, first - 8), min(len(probs), last + 8)  # 256 ms pads: onsets and tails are quiet
        while b - a > limit:
            lo = a + limit // 2
            cut = lo + int(np.argmin(probs[lo : a + limit]))
            split.append((a, cut))
            a = cut
        split.append((a, b))
    packed: list[tuple[int, int]] = []
    for a, b in split:
        if packed and b - packed[-1][0] <= limit:
            packed[-1] = (packed[-1][0], b)
        else:
            packed.append((a, b))
    return [(a * FRAME, min(len(pcm16k), b * FRAME)) for a, b in packed]


# ---- engines -----------------------------------------------------------------------------------


def batch_router(state: ServerState) -> STTRouter:
    """The realtime route's rule (``STTRouter``), except that English prefers Whisper tiny.en when
    it is loaded (batch work is not bound by latency, and Whisper reports word times)."""
    return STTRouter(state.stt_engines, BATCH_MODELS, prefer=("whisper",))


def choose_engine(state: ServerState, model_id: str, language_code: str | None) -> EngineChoice:
    """The engine for a model id and language (``batch_router``'s rule); refusals are 400s."""
    try:
        return batch_router(state).choose(model_id, language_code)
    except NoEngine as exc:
        code = {"no_engine": "model_not_found", "unknown_model": "model_not_found"}.get(
            exc.reason, "unsupported_language"
        )
        raise BadRequest(400, code, exc.message) from None


def _segment_words(result: Recognition, start: int, end: int) -> list[RecognizedWord]:
    """The words of samples ``start:end`` in stream time. Engine words that continue the previous
    one (Whisper splits "fat-mutton" into "fat" and "-mutton") are joined to it, so that words and
    spacings spell exactly the transcript's text, as upstream's do."""
    out: list[RecognizedWord] = []
    for w in words_of(result, start, end):
        text, logprob = w.text.strip(), w.logprob or 0.0
        if not text:
            continue
        if out and result.words and (text[0] in CONTINUES or not any(c.isalnum() for c in text)):
            last = out[-1]
            out[-1] = RecognizedWord(
                last.text + text,
                last.start_s,
                max(last.end_s, round(w.end_s, 3)),
                min(last.logprob or 0.0, logprob),
            )
        else:
            out.append(RecognizedWord(text, round(w.start_s, 3), round(w.end_s, 3), logprob))
    return out


# ---- the response ------------------------------------------------------------------------------


def scribe_words(words: list[RecognizedWord], granularity: str, speaker: str | None) -> list[dict[str, Any]]:
    """Upstream's ``words``: each word, and a ``spacing`` entry between consecutive words."""
    if granularity == "none":
        return []
    tag = {"speaker_id": speaker} if speaker else {}
    out: list[dict[str, Any]] = []
    for word in words:
        start, end = word.start_s, max(word.start_s, word.end_s)
        if out:
            gap = out[-1]["end"]
            spacing = {"text": " ", "start": gap, "end": max(gap, start), "type": "spacing", "logprob": 0.0}
            out.append(spacing | tag)
        entry: dict[str, Any] = {"text": word.text, "start": start, "end": end, "type": "word"}
        entry |= {"logprob": round(word.logprob or 0.0, 4), **tag}
        if granularity == "character":
            step = (end - start) / max(1, len(word.text))
            entry["characters"] = [
                {"text": c, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
                for i, c in enumerate(word.text)
            ]
        out.append(entry)
    return out


async def transcribe(state: ServerState, form: BatchForm, upload: Part | None) -> dict[str, Any]:
    """Decode, segment, detect the language if none was given, and recognise each segment."""
    if upload is None:
        if form.cloud_storage_url or form.source_url:
            raise BadRequest(
                400,
                "unsupported_feature",
                "cloud_storage_url and source_url are not served locally: this server does not "
                "fetch remote files. Upload the audio as the 'file' field instead.",
            )
        raise BadRequest(422, "invalid_request", "Provide the audio as a 'file' field.")
    if form.webhook:
        raise BadRequest(
            400, "unsupported_feature", "webhook=true is not served locally: omit it to get the transcript."
        )
    pool = state.stt_pool
    if pool is None:
        raise BadRequest(400, "model_not_found", "This server has no speech-to-text engine loaded.")

    def deadline() -> float:
        return time.monotonic() + BATCH_DEADLINE_S

    choice = choose_engine(state, form.model_id, form.language_code)
    engine, language = choice.engine, choice.language
    max_s = MAX_SEGMENT_S.get(engine.name, DEFAULT_SEGMENT_S)

    def prepare() -> tuple[npt.NDArray[np.int16], list[tuple[int, int]]]:
        pcm = decode_upload(upload.data, form.file_format)
        return pcm, speech_segments(pcm, max_s)

    pcm, segments = await pool.run(prepare, deadline())
    probability = 1.0 if choice.given else 0.0  # not given, not detected: assumed (docs/voices.md)
    if choice.detector is not None and segments:
        speech = np.concatenate([pcm[a:b] for a, b in segments])
        detected, probability = await pool.run(
            functools.partial(choice.detector.detect_language, speech), deadline()
        )
        settled = batch_router(state).settle(choice, detected)
        language = settled.language
        if settled.engine is not engine:
            engine = settled.engine
            max_s = MAX_SEGMENT_S.get(engine.name, DEFAULT_SEGMENT_S)
            segments = await pool.run(lambda: speech_segments(pcm, max_s), deadline())
    want_words = form.timestamps_granularity != "none"
    texts: list[str] = []
    words: list[RecognizedWord] = []
    for a, b in segments:
        recognize = functools.partial(engine.recognize, pcm[a:b], language, want_words)
        result = await pool.run(recognize, deadline())
        if result.text.strip():
            found = _segment_words(result, a, b)
            texts.append(" ".join(w.text for w in found) if result.words else result.text.strip())
            words += found
    speaker = "speaker_0" if form.diarize else None
    return {
        "language_code": report_code(language),
        "language_probability": round(probability, 4),
        "text": " ".join(texts),
        "words": scribe_words(words, form.timestamps_granularity, speaker),
        "transcription_id": uuid.uuid4().hex,
        "audio_duration_secs": round(len(pcm) / RATE, 3),
    }


@router.post("/v1/speech-to-text")
async def speech_to_text(request: Request, caller: str = Depends(http_caller)) -> Response:
    """Counted like a realtime session while it runs (the server's and the key's caps)."""
    state = server_state(request.app)
    content_type = request.headers.get("content-type", "")
    body = await request.body()  # at most stt_max_upload_bytes: server.app.BodyLimit
    try:
        form, upload = _form(parse_multipart(body, content_type))
        relayed = relays(state, form.model_id, stt=True)
        with state.admitted(None, "stt", not relayed, caller if limited(caller) else None) as refusal:
            if refusal is not None:
                log.info("HTTP transcription refused: %s (%s)", refusal.error, refusal.message)
                state.metrics.refused.labels("stt_http", refusal.error).inc()
                return refused_response(refusal)
            if relayed:
                query = request.query_params.multi_items()
                return await relay_http(state, "/v1/speech-to-text", query, body, content_type, stream=False)
            return JSONResponse(await transcribe(state, form, upload))
    except BadRequest as exc:
        return error_response(exc.status, exc.code, exc.message)
