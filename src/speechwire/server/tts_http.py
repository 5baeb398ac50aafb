"""HTTP text-to-speech: ``POST /v1/text-to-speech/{voice_id}`` (the SDKs' ``convert``), ``/with-timestamps``
(``convert_with_timestamps``), ``/stream`` and ``/stream/with-timestamps``.

All four take the same body and query parameters and run the same speech pipeline; the plain
routes answer once synthesis is complete (audio bytes, or one JSON object with the alignment of
the whole text), the ``/stream`` routes as each piece is ready. ``eleven_v3`` is served by the
voice's local engine; its audio tags (``[laughs]``) are removed rather than read aloud.

Errors use the HTTP API's shape, ``{"detail": {"status", "message"}}``, with a 4xx status.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.formats import AudioFormat, UnsupportedFormat
from speechwire.engines.elevenlabs import UpstreamRefused
from speechwire.engines.registry import UnknownModel, UnknownVoice
from speechwire.protocol.tts import DEFAULT_OUTPUT_FORMAT, VoiceSettings
from speechwire.server.relay import relays_tts
from speechwire.server.speech import SpeechPipeline, pipeline_for
from speechwire.server.state import server_state

router = APIRouter()

MAX_HTTP_TEXT_CHARS = 40_000
"""Flash v2.5's per-request limit upstream; longer texts belong on the WebSocket."""


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, max_length=MAX_HTTP_TEXT_CHARS)
    model_id: str | None = None
    language_code: str | None = None
    voice_settings: VoiceSettings | None = None
    seed: int | None = None
    previous_text: str | None = None
    next_text: str | None = None


AUDIO_TAG = re.compile(r"\[[A-Za-z][A-Za-z '-]{0,38}\]\s?")
"""An Eleven v3 audio tag (``[whispers]``, ``[laughs harder]``): direction for the voice, not text."""


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


def _body_model_id(raw: bytes) -> str | None:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
        return None
    model = data.get("model_id") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


async def _relayed(request: Request, path: str) -> Response | None:
    """The cloud's response, when this request goes to the cloud; None to serve it locally."""
    state = server_state(request.app)
    raw = await request.body()
    if state.cloud is None or not relays_tts(state, _body_model_id(raw)):
        return None
    try:
        status, content_type, chunks = await state.cloud.http_stream(
            path, request.query_params.multi_items(), raw, "application/json"
        )
    except UpstreamRefused as exc:
        return _error(503, "service_unavailable", exc.message)
    if status >= 400:
        body = b"".join([chunk async for chunk in chunks])
        return Response(body, status_code=status, media_type=content_type)
    return StreamingResponse(chunks, status_code=status, media_type=content_type)


async def _prepare(request: Request, voice_id: str) -> tuple[SpeechPipeline, str] | JSONResponse:
    state = server_state(request.app)
    try:
        fmt = AudioFormat.parse(request.query_params.get("output_format", DEFAULT_OUTPUT_FORMAT))
    except UnsupportedFormat as exc:
        return _error(422, "unsupported_output_format", str(exc))
    try:
        body = StreamRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return _error(422, "invalid_request", "; ".join(e["msg"] for e in exc.errors()[:5]))
    try:
        engine, voice = state.registry.resolve(voice_id, body.model_id)
    except UnknownVoice as exc:
        return _error(404, "voice_not_found", str(exc))
    except UnknownModel as exc:
        return _error(400, "model_not_found", str(exc))
    text = body.text
    if body.model_id == "eleven_v3":
        text = AUDIO_TAG.sub("", text).strip() or text
    return pipeline_for(state, engine, voice, body.voice_settings, fmt), text


@router.post("/v1/text-to-speech/{voice_id}/stream")
async def stream(request: Request, voice_id: str) -> Response:
    relayed = await _relayed(request, f"/v1/text-to-speech/{voice_id}/stream")
    if relayed is not None:
        return relayed
    prepared = await _prepare(request, voice_id)
    if isinstance(prepared, JSONResponse):
        return prepared
    pipeline, text = prepared

    async def body() -> AsyncIterator[bytes]:
        async for out in pipeline.speak(text):
            yield out.audio
        tail = pipeline.finish()
        if tail is not None and tail.audio:
            yield tail.audio

    return StreamingResponse(body(), media_type=pipeline.format.content_type)


def _http_alignment(alignment: CharAlignment, offset_ms: float) -> dict[str, Any]:
    """The HTTP shape: ``characters`` with start/end in seconds, from the start of the response."""
    return {
        "characters": list(alignment.chars),
        "character_start_times_seconds": [round((offset_ms + s) / 1000, 3) for s in alignment.start_ms],
        "character_end_times_seconds": [
            round((offset_ms + s + d) / 1000, 3)
            for s, d in zip(alignment.start_ms, alignment.duration_ms, strict=True)
        ],
    }


@router.post("/v1/text-to-speech/{voice_id}/stream/with-timestamps")
async def stream_with_timestamps(request: Request, voice_id: str) -> Response:
    relayed = await _relayed(request, f"/v1/text-to-speech/{voice_id}/stream/with-timestamps")
    if relayed is not None:
        return relayed
    prepared = await _prepare(request, voice_id)
    if isinstance(prepared, JSONResponse):
        return prepared
    pipeline, text = prepared

    async def body() -> AsyncIterator[bytes]:
        offset = 0.0
        async for out in pipeline.speak(text):
            aligned = _http_alignment(out.alignment, offset)
            offset += out.duration_ms
            chunk = {
                "audio_base64": base64.b64encode(out.audio).decode(),
                "alignment": aligned,
                "normalized_alignment": aligned,
            }
            yield (json.dumps(chunk) + "\n").encode()
        tail = pipeline.finish()
        if tail is not None and (tail.audio or tail.alignment.chars):
            aligned = _http_alignment(tail.alignment, offset)
            chunk = {
                "audio_base64": base64.b64encode(tail.audio).decode(),
                "alignment": aligned,
                "normalized_alignment": aligned,
            }
            yield (json.dumps(chunk) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")


@router.post("/v1/text-to-speech/{voice_id}")
async def convert(request: Request, voice_id: str) -> Response:
    """``text_to_speech.convert``: the whole audio in one body."""
    relayed = await _relayed(request, f"/v1/text-to-speech/{voice_id}")
    if relayed is not None:
        return relayed
    prepared = await _prepare(request, voice_id)
    if isinstance(prepared, JSONResponse):
        return prepared
    pipeline, text = prepared
    audio = [out.audio async for out in pipeline.speak(text)]
    tail = pipeline.finish()
    if tail is not None:
        audio.append(tail.audio)
    return Response(b"".join(audio), media_type=pipeline.format.content_type)


@router.post("/v1/text-to-speech/{voice_id}/with-timestamps")
async def convert_with_timestamps(request: Request, voice_id: str) -> Response:
    """``text_to_speech.convert_with_timestamps``: one JSON object, ``audio_base64`` of the whole
    audio and the alignment of every character in seconds from its start."""
    relayed = await _relayed(request, f"/v1/text-to-speech/{voice_id}/with-timestamps")
    if relayed is not None:
        return relayed
    prepared = await _prepare(request, voice_id)
    if isinstance(prepared, JSONResponse):
        return prepared
    pipeline, text = prepared
    audio: list[bytes] = []
    aligned: dict[str, list[Any]] = {
        "characters": [],
        "character_start_times_seconds": [],
        "character_end_times_seconds": [],
    }
    offset = 0.0
    outputs = [out async for out in pipeline.speak(text)]
    tail = pipeline.finish()
    for out in [*outputs, *([tail] if tail is not None else [])]:
        audio.append(out.audio)
        for key, values in _http_alignment(out.alignment, offset).items():
            aligned[key] += values
        offset += out.duration_ms
    return JSONResponse(
        {
            "audio_base64": base64.b64encode(b"".join(audio)).decode(),
            "alignment": aligned,
            "normalized_alignment": aligned,
        }
    )
