"""``POST /v1/text-to-speech/{voice_id}/stream`` and ``/stream/with-timestamps`` (HTTP streaming).

Errors use the HTTP API's shape, ``{"detail": {"status", "message"}}``, with a 4xx status.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.formats import AudioFormat, UnsupportedFormat
from speechwire.engines.registry import UnknownModel, UnknownVoice
from speechwire.protocol.tts import DEFAULT_OUTPUT_FORMAT, VoiceSettings
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


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


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
    return pipeline_for(state, engine, voice, body.voice_settings, fmt), body.text


@router.post("/v1/text-to-speech/{voice_id}/stream")
async def stream(request: Request, voice_id: str) -> Response:
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
