"""``GET /v1/user`` and ``GET /v1/user/subscription``: honest answers for a local server.

SDK code often checks the account before it speaks (quota dashboards, "characters left" guards,
connection tests). A local server has no account, billing or quota: the tier is ``local``, the
character limit is effectively unlimited, nothing is ever charged, and the user id names the
caller (a key's stable hash, or the client address on a dev server). Every field the official
SDKs require is present, so their models parse.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from speechwire.server.access.auth import require_key

router = APIRouter()

UNLIMITED = 2**31 - 1
"""Upstream's counts are int32-sized; this is the largest, and nothing here counts against it."""


def subscription() -> dict[str, Any]:
    return {
        "tier": "local",
        "character_count": 0,
        "character_limit": UNLIMITED,
        "max_credit_limit_extension": "unlimited",
        "can_extend_character_limit": False,
        "allowed_to_extend_character_limit": False,
        "voice_slots_used": 0,
        "professional_voice_slots_used": 0,
        "professional_voice_slots_used_in_workspace": 0,
        "voice_limit": 0,
        "voice_add_edit_counter": 0,
        "professional_voice_limit": 0,
        "can_extend_voice_limit": False,
        "can_use_instant_voice_cloning": False,
        "can_use_professional_voice_cloning": False,
        "currency": "usd",
        "current_overage": {"amount": "0", "currency": "usd"},
        "status": "active",
        "billing_period": "monthly_period",
        "character_refresh_period": "monthly_period",
    }


@router.get("/v1/user/subscription")
async def user_subscription() -> dict[str, Any]:
    """The extended shape (``Subscription`` in the SDKs): invoices too, none of them open."""
    return {**subscription(), "open_invoices": [], "has_open_invoices": False}


@router.get("/v1/user")
async def user(caller: str = Depends(require_key)) -> dict[str, Any]:
    return {
        "user_id": caller,
        "workspace_id": "speechwire-local",
        "subscription": subscription(),
        "is_new_user": False,
        "can_use_delayed_payment_methods": False,
        "is_onboarding_completed": True,
        "is_onboarding_checklist_completed": True,
        "first_name": "speechwire",
        "is_api_key_hashed": True,
        "created_at": 0,
        "seat_type": "workspace_admin",
    }
