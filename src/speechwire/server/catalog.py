"""``GET /v1/voices`` and ``GET /v1/models``: what this server can speak, in ElevenLabs' shapes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from speechwire.server.state import server_state

router = APIRouter()


@router.get("/v1/voices")
async def voices(request: Request) -> dict[str, Any]:
    state = server_state(request.app)
    return {
        "voices": [
            {
                "voice_id": v.voice_id,
                "name": v.name,
                "category": "premade",
                "description": v.description,
                "labels": {**v.labels, "language": v.language, "engine": v.engine},
                "settings": None,
                "available_for_tiers": [],
                "high_quality_base_model_ids": [],
                "verified_languages": [],
                "is_owner": False,
            }
            for v in state.registry.voices()
        ]
    }


@router.get("/v1/models")
async def models(request: Request) -> list[dict[str, Any]]:
    state = server_state(request.app)
    return [
        {
            "model_id": m.model_id,
            "name": m.name,
            "description": m.description,
            "can_do_text_to_speech": True,
            "can_do_voice_conversion": False,
            "can_use_style": False,
            "can_use_speaker_boost": False,
            "serves_pro_voices": False,
            "token_cost_factor": 0.0,
            "requires_alpha_access": False,
            "languages": [{"language_id": "en", "name": "English"}],
        }
        for m in state.registry.models()
    ]
