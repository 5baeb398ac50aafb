"""The voice and model catalogue, in ElevenLabs' shapes, where the SDKs look for it.

``GET /v1/voices`` (``voices.get_all``), ``GET /v2/voices`` (``voices.search``), ``GET
/v1/voices/{id}`` (``voices.get``), ``GET /v1/voices/settings/default`` and ``GET
/v1/voices/{id}/settings`` (``voices.settings``), and ``GET /v1/models``. The catalogue holds the
local voices and ElevenLabs' premade voices (each labelled with the local voice that speaks it,
``labels.speechwire_voice``). Fields the SDK models mark optional are left out rather than sent
as ``null``, since the JS SDK's parser is strict about types.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from speechwire.engines.base import VoiceInfo, primary_language
from speechwire.engines.premade import PremadeVoice
from speechwire.engines.registry import ModelInfo
from speechwire.server.routes.tts_http import MAX_HTTP_TEXT_CHARS, error_response
from speechwire.server.state import server_state

router = APIRouter()

DEFAULT_SETTINGS: dict[str, Any] = {
    "stability": 0.5,
    "similarity_boost": 0.75,
    "style": 0.0,
    "use_speaker_boost": True,
    "speed": 1.0,
}
"""Upstream's defaults; local engines honour ``speed`` and accept the rest."""
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


def _voice(
    voice_id: str,
    name: str,
    description: str,
    labels: dict[str, str],
    legacy: bool,
    verified: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "voice_id": voice_id,
        "name": name,
        "category": "premade",
        "description": description,
        "labels": labels,
        "settings": DEFAULT_SETTINGS,
        "available_for_tiers": [],
        "high_quality_base_model_ids": [],
        "verified_languages": verified,
        "is_owner": False,
        "is_legacy": legacy,
    }


Speakers = list[tuple[ModelInfo, frozenset[str]]]
"""Each model with the language codes it speaks here, built once per catalogue request."""


def _speakers(models: list[ModelInfo]) -> Speakers:
    return [(m, frozenset(code for code, _ in m.languages)) for m in models]


def _verified(v: VoiceInfo, speakers: Speakers) -> list[dict[str, str]]:
    """Upstream's ``verified_languages``: one entry per model id that speaks the voice's language
    with this voice here (``locale`` is the voice's BCP-47 tag)."""
    accent = v.labels.get("accent", "standard")
    return [
        {"language": v.language_code, "model_id": m.model_id, "accent": accent, "locale": v.language}
        for m, codes in speakers
        if (m.engine is None or m.engine == v.engine) and v.language_code in codes
    ]


def _local_voice(v: VoiceInfo, models: Speakers) -> dict[str, Any]:
    labels = {**v.labels, "language": v.language, "engine": v.engine}
    return _voice(v.voice_id, v.name, v.description, labels, False, _verified(v, models))


def _premade_voice(p: PremadeVoice, local: VoiceInfo, models: Speakers) -> dict[str, Any]:
    description = (
        f"ElevenLabs' premade voice {p.name} ({p.gender}, {p.accent}), spoken here by the local "
        f"voice {local.voice_id!r} ({local.name})."
    )
    labels = {
        "gender": p.gender,
        "accent": p.accent.lower(),
        "language": "en",
        "speechwire_voice": local.voice_id,
        "engine": local.engine,
    }
    return _voice(p.voice_id, p.name, description, labels, p.legacy, _verified(local, models))


def catalogue(request: Request) -> list[dict[str, Any]]:
    """Local voices first, then the premade ones in upstream's order."""
    registry = server_state(request.app).registry
    models = _speakers(registry.models())
    return [_local_voice(v, models) for v in registry.voices()] + [
        _premade_voice(p, local, models) for p, local in registry.premade()
    ]


def _find(request: Request, voice_id: str) -> dict[str, Any] | None:
    found = next((v for v in catalogue(request) if v["voice_id"] == voice_id), None)
    registry = server_state(request.app).registry
    if found is not None or (local := registry.lookup(voice_id)) is None:
        return found
    alias = _local_voice(local, _speakers(registry.models()))
    return {**alias, "voice_id": voice_id, "name": f"{local.name} (alias)"}


def _not_found(voice_id: str) -> JSONResponse:
    message = f"A voice with the voice_id {voice_id!r} was not found (GET /v1/voices lists them)."
    return error_response(404, "voice_not_found", message)


@router.get("/v1/voices")
async def voices(request: Request) -> dict[str, Any]:
    return {"voices": catalogue(request)}


def _matches(voice: dict[str, Any], search: str) -> bool:
    haystack = " ".join([voice["voice_id"], voice["name"], voice["description"], *voice["labels"].values()])
    return search.lower() in haystack.lower()


def _speaks(voice: dict[str, Any], language: str) -> bool:
    """The ``language`` filter: a bare code (``fr``) matches every voice of that language
    (``fr-FR``), a tag with a region (``pt-BR``) that tag only."""
    tag = str(voice["labels"].get("language", "")).lower()
    wanted = language.strip().lower().replace("_", "-")
    return tag == wanted or ("-" not in wanted and primary_language(tag) == wanted)


@router.get("/v2/voices")
async def search_voices(
    request: Request,
    search: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    next_page_token: str | None = None,
    voice_type: str | None = None,
    category: str | None = None,
    sort: str | None = None,
    sort_direction: str | None = None,
    voice_ids: Annotated[list[str] | None, Query()] = None,
    include_total_count: bool = True,
    gender: str | None = None,
    accent: str | None = None,
    language: str | None = None,
) -> Any:
    """``voices.search``: every voice here is a default (premade) one, so ``voice_type`` values
    that mean the caller's own voices (``personal``, ``workspace``, ``community``, ``saved``,
    ``non-default``) find none, and a ``category`` other than ``premade`` finds none.
    ``gender``, ``accent`` and ``language`` match labels; other filters are accepted and
    ignored. ``next_page_token`` is an offset into the filtered list."""
    page_size = max(1, min(MAX_PAGE_SIZE, page_size))
    found = catalogue(request)
    if voice_type not in (None, "default") or category not in (None, "premade"):
        found = []
    if search:
        found = [v for v in found if _matches(v, search)]
    for label, value in (("gender", gender), ("accent", accent)):
        if value:
            found = [v for v in found if str(v["labels"].get(label, "")).lower() == value.lower()]
    if language:
        found = [v for v in found if _speaks(v, language)]
    if voice_ids:
        found = [v for v in found if v["voice_id"] in voice_ids]
    if sort == "name":
        found.sort(key=lambda v: str(v["name"]).lower(), reverse=sort_direction == "desc")
    start = int(next_page_token) if next_page_token and next_page_token.isdigit() else 0
    end = start + page_size
    body = {"voices": found[start:end], "has_more": end < len(found), "total_count": len(found)}
    return {**body, "next_page_token": str(end)} if end < len(found) else body


@router.get("/v1/voices/settings/default")
async def default_settings() -> dict[str, Any]:
    return DEFAULT_SETTINGS


@router.get("/v1/voices/{voice_id}/settings")
async def voice_settings(request: Request, voice_id: str) -> Any:
    if _find(request, voice_id) is None:
        return _not_found(voice_id)
    return DEFAULT_SETTINGS


@router.get("/v1/voices/{voice_id}")
async def voice(request: Request, voice_id: str) -> Any:
    found = _find(request, voice_id)
    return found if found is not None else _not_found(voice_id)


@router.get("/v1/models")
async def models(request: Request) -> list[dict[str, Any]]:
    """Text-to-speech models only, as upstream lists them (its Scribe ids are not in
    ``/v1/models`` either); speech-to-text model ids are documented in the README."""
    state = server_state(request.app)
    return [
        {
            "model_id": m.model_id,
            "name": m.name,
            "description": m.description,
            "can_be_finetuned": False,
            "can_do_text_to_speech": True,
            "can_do_voice_conversion": False,
            "can_use_style": False,
            "can_use_speaker_boost": False,
            "serves_pro_voices": False,
            "token_cost_factor": 0.0,
            "requires_alpha_access": False,
            "maximum_text_length_per_request": MAX_HTTP_TEXT_CHARS,
            "languages": [{"language_id": code, "name": name} for code, name in m.languages],
        }
        for m in state.registry.models()
    ]
