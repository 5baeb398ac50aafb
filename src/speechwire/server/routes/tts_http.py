"""HTTP text-to-speech: ``POST /v1/text-to-speech/{voice_id}`` (the SDKs' ``convert``), ``/with-timestamps``
(``convert_with_timestamps``), ``/stream`` and ``/stream/with-timestamps``.

All four take the same body and query parameters and run the same speech pipeline; the plain
routes answer once synthesis is complete (audio bytes, or one JSON object with the alignment of
the whole text), the ``/stream`` routes as each piece is ready. ``eleven_v3`` is served by the
voice's local engine; its audio tags (``[laughs]``) are removed rather than read aloud.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Receive, Scope, Send

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.formats import AudioFormat, UnsupportedFormat
from speechwire.engines.registry import UnknownModel, UnknownVoice, UnsupportedLanguage
from speechwire.engines.synthesis import AudioOut, SpeechPipeline
from speechwire.protocol.tts import DEFAULT_OUTPUT_FORMAT, VoiceSettings
from speechwire.server.access.auth import http_caller, limited
from speechwire.server.relay import relay_http, relays
from speechwire.server.speech import pipeline_for
from speechwire.server.state import KEY_LIMIT, Refusal, ServerState, server_state

router = APIRouter()
log = logging.getLogger("speechwire.server")
Respond = Callable[[SpeechPipeline, str], Awaitable[Response]]

MAX_HTTP_TEXT_CHARS = 40_000
"""Flash v2.5's per-request limit upstream; longer texts belong on the WebSocket."""


class StreamRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_HTTP_TEXT_CHARS)
    model_id: str | None = None
    language_code: str | None = None
    voice_settings: VoiceSettings | None = None
    seed: int | None = None
    previous_text: str | None = Field(default=None, max_length=MAX_HTTP_TEXT_CHARS)
    next_text: str | None = Field(default=None, max_length=MAX_HTTP_TEXT_CHARS)


AUDIO_TAG = re.compile(r"\[[A-Za-z][A-Za-z '-]{0,38}\]\s?")
"""An Eleven v3 audio tag (``[whispers]``, ``[laughs harder]``): direction for the voice, not text."""


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The HTTP API's error shape, ``{"detail": {"status", "message"}}``, for every route."""
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status, headers=headers)


def _body_model_id(raw: bytes) -> str | None:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
        return None
    model = data.get("model_id") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def _prepare(
    state: ServerState, request: Request, raw: bytes, voice_id: str
) -> tuple[SpeechPipeline, str] | Response:
    """The pipeline and text of a local request, or the error response."""
    try:
        fmt = AudioFormat.parse(request.query_params.get("output_format", DEFAULT_OUTPUT_FORMAT))
    except UnsupportedFormat as exc:
        return error_response(422, "unsupported_output_format", str(exc))
    try:
        body = StreamRequest.model_validate_json(raw)
    except ValidationError as exc:
        return error_response(422, "invalid_request", "; ".join(e["msg"] for e in exc.errors()[:5]))
    try:
        engine, voice = state.registry.resolve(voice_id, body.model_id, body.language_code or None)
    except UnknownVoice as exc:
        return error_response(404, "voice_not_found", str(exc))
    except UnknownModel as exc:
        return error_response(400, "model_not_found", str(exc))
    except UnsupportedLanguage as exc:  # upstream answers a language a model lacks with a 400
        return error_response(400, "invalid_request", str(exc))
    text = body.text
    if body.model_id == "eleven_v3":
        text = AUDIO_TAG.sub("", text).strip() or text
    return pipeline_for(state, engine, voice, body.voice_settings, fmt), text


def refused_response(refusal: Refusal) -> JSONResponse:
    """An HTTP request the server cannot take now: 429 when its key holds its share, 503 when
    the server or its engines are full (both say to try again; neither is the caller's fault)."""
    status = 429 if refusal.error == KEY_LIMIT else 503
    return error_response(status, refusal.error, refusal.message, {"Retry-After": "1"})


class HeldResponse(Response):
    """A response that holds its session's place until it has been sent in full (or the
    client left): a streamed synthesis is engine work for as long as it streams."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        self.inner, self.release = inner, release
        self.status_code = inner.status_code
        self.background = inner.background
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.inner.background = self.background
            await self.inner(scope, receive, send)
        finally:
            self.release()


def _post(suffix: str) -> Callable[[Respond], Respond]:
    """Register ``POST /v1/text-to-speech/{voice_id}<suffix>``: admitted like a WebSocket
    session (the server's and the key's caps), then relayed or prepared by ``_prepare`` (one
    place for all four), then answered by the decorated function."""

    def register(respond: Respond) -> Respond:
        async def endpoint(request: Request, voice_id: str, caller: str = Depends(http_caller)) -> Response:
            state = server_state(request.app)
            raw = await request.body()
            relayed = relays(state, _body_model_id(raw), stt=False)
            admission = state.admit(None, "tts", not relayed, caller if limited(caller) else None)
            if isinstance(admission, Refusal):
                log.info("HTTP synthesis refused: %s (%s)", admission.error, admission.message)
                state.metrics.refused.labels("tts_http", admission.error).inc()
                return refused_response(admission)
            try:
                if relayed:
                    query = request.query_params.multi_items()
                    path = request.url.path
                    response = await relay_http(state, path, query, raw, "application/json", stream=True)
                else:
                    prepared = _prepare(state, request, raw, voice_id)
                    response = prepared if isinstance(prepared, Response) else await respond(*prepared)
            except BaseException:
                admission()
                raise
            return HeldResponse(response, admission)

        endpoint.__doc__ = respond.__doc__
        router.add_api_route(f"/v1/text-to-speech/{{voice_id}}{suffix}", endpoint, methods=["POST"])
        return respond

    return register


async def _spoken(pipeline: SpeechPipeline, text: str) -> AsyncIterator[AudioOut]:
    """Every piece of ``text``'s audio, the encoder's tail included."""
    async for out in pipeline.speak(text):
        yield out
    if (tail := pipeline.finish()) is not None:
        yield tail


@_post("/stream")
async def stream(pipeline: SpeechPipeline, text: str) -> Response:
    chunks = (out.audio async for out in _spoken(pipeline, text))  # an empty chunk sends nothing
    return StreamingResponse(chunks, media_type=pipeline.format.content_type)


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


def _timed(audio: bytes, aligned: dict[str, Any]) -> dict[str, Any]:
    """The with-timestamps shape (upstream's normalised alignment is the same one here)."""
    b64 = base64.b64encode(audio).decode()
    return {"audio_base64": b64, "alignment": aligned, "normalized_alignment": aligned}


@_post("/stream/with-timestamps")
async def stream_with_timestamps(pipeline: SpeechPipeline, text: str) -> Response:

    async def body() -> AsyncIterator[bytes]:
        offset = 0.0
        async for out in _spoken(pipeline, text):
            if out.audio or out.alignment.chars:  # only the tail can hold neither
                yield (json.dumps(_timed(out.audio, _http_alignment(out.alignment, offset))) + "\n").encode()
            offset += out.duration_ms

    return StreamingResponse(body(), media_type="application/x-ndjson")


@_post("")
async def convert(pipeline: SpeechPipeline, text: str) -> Response:
    """``text_to_speech.convert``: the whole audio in one body."""
    audio = [out.audio async for out in _spoken(pipeline, text)]
    return Response(b"".join(audio), media_type=pipeline.format.content_type)


@_post("/with-timestamps")
async def convert_with_timestamps(pipeline: SpeechPipeline, text: str) -> Response:
    """``text_to_speech.convert_with_timestamps``: one JSON object, ``audio_base64`` of the whole
    audio and the alignment of every character in seconds from its start."""
    audio: list[bytes] = []
    aligned: dict[str, list[Any]] = {k: [] for k in _http_alignment(CharAlignment.empty(), 0.0)}
    offset = 0.0
    async for out in _spoken(pipeline, text):
        audio.append(out.audio)
        for key, values in _http_alignment(out.alignment, offset).items():
            aligned[key] += values
        offset += out.duration_ms
    return JSONResponse(_timed(b"".join(audio), aligned))
