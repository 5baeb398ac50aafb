"""ElevenLabs' premade voice ids, so the ids in every official sample work against local engines.

Upstream's quickstarts, SDK docs and integrations (pipecat, livekit, n8n…) hard-code a premade
voice id such as ``JBFqnCBsd6RMkjVDRZzb`` (George). A drop-in server that answers those with
``voice_not_found`` fails on the first call, so each premade id is an alias of a local voice.

Which local voice: Piper's ``joe`` is the only natural-sounding voice installed, and a natural
voice of the "wrong" gender serves a voice app far better than a robotic one of the right
gender, so every premade id maps to the server's default voice unless configured otherwise.
``SPEECHWIRE_TTS_PREMADE_VOICES`` maps a gender (``male``/``female``/``neutral``) to a local
voice, and ``SPEECHWIRE_TTS_VOICE_ALIASES`` maps single ids (it wins over both). The table is
documented in ``docs/voices.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Gender = Literal["male", "female", "neutral"]


@dataclass(frozen=True, slots=True)
class PremadeVoice:
    """One of upstream's premade voices, with the labels upstream gives it."""

    voice_id: str
    name: str
    gender: Gender
    accent: str
    legacy: bool = False
    """Still served by upstream to old accounts and samples, no longer in the default library."""


PREMADE_VOICES: tuple[PremadeVoice, ...] = (
    # The current default library (``GET /v2/voices?voice_type=default`` upstream, 2025-2026).
    PremadeVoice("9BWtsMINqrJLrRacOk9x", "Aria", "female", "American"),
    PremadeVoice("CwhRBWXzGAHq8TQ4Fs17", "Roger", "male", "American"),
    PremadeVoice("EXAVITQu4vr4xnSDxMaL", "Sarah", "female", "American"),
    PremadeVoice("FGY2WhTYpPnrIDTdsKH5", "Laura", "female", "American"),
    PremadeVoice("IKne3meq5aSn9XLyUdCD", "Charlie", "male", "Australian"),
    PremadeVoice("JBFqnCBsd6RMkjVDRZzb", "George", "male", "British"),
    PremadeVoice("N2lVS1w4EtoT3dr4eOWO", "Callum", "male", "Transatlantic"),
    PremadeVoice("SAz9YHcvj6GT2YYXdXww", "River", "neutral", "American"),
    PremadeVoice("TX3LPaxmHKxFdv7VOQHJ", "Liam", "male", "American"),
    PremadeVoice("XB0fDUnXU5powFXDhCwa", "Charlotte", "female", "Swedish"),
    PremadeVoice("Xb7hH8MSUJpSbSDYk0k2", "Alice", "female", "British"),
    PremadeVoice("XrExE9yKIg1WjnnlVkGX", "Matilda", "female", "American"),
    PremadeVoice("bIHbv24MWmeRgasZH58o", "Will", "male", "American"),
    PremadeVoice("cgSgspJ2msm6clMCkdW9", "Jessica", "female", "American"),
    PremadeVoice("cjVigY5qzO86Huf0OWal", "Eric", "male", "American"),
    PremadeVoice("iP95p4xoKVk53GoZ742B", "Chris", "male", "American"),
    PremadeVoice("nPczCjzI2devNBz1zQrb", "Brian", "male", "American"),
    PremadeVoice("onwK4e9ZLuTAKqWW03F9", "Daniel", "male", "British"),
    PremadeVoice("pFZP5JQG7iQjIQuC4Bku", "Lily", "female", "British"),
    PremadeVoice("pqHfZKP75CvOlQylNhV4", "Bill", "male", "American"),
    # Legacy voices that older samples and tutorials still use.
    PremadeVoice("21m00Tcm4TlvDq8ikWAM", "Rachel", "female", "American", legacy=True),
    PremadeVoice("pNInz6obpgDQGcFmaJgB", "Adam", "male", "American", legacy=True),
    PremadeVoice("ErXwobaYiN019PkySvjV", "Antoni", "male", "American", legacy=True),
    PremadeVoice("VR6AewLTigWG4xSOukaG", "Arnold", "male", "American", legacy=True),
    PremadeVoice("AZnzlk1XvdvUeBnXmlld", "Domi", "female", "American", legacy=True),
    PremadeVoice("MF3mGyEYCl7XYWbV9V6O", "Elli", "female", "American", legacy=True),
    PremadeVoice("TxGEqnHWrfWFTfGW9XjX", "Josh", "male", "American", legacy=True),
    PremadeVoice("yoZ06aMxZJJ28mfd3POQ", "Sam", "male", "American", legacy=True),
    PremadeVoice("2EiwWnXFnvU5JabPnv8n", "Clyde", "male", "American", legacy=True),
    PremadeVoice("CYw3kZ02Hs0563khs1Fj", "Dave", "male", "British", legacy=True),
    PremadeVoice("ThT5KcBeYPX3keUQqHPh", "Dorothy", "female", "British", legacy=True),
    PremadeVoice("LcfcDJNUP1GQjkzn1xUU", "Emily", "female", "American", legacy=True),
    PremadeVoice("oWAxZDx7w5VEj9dCyTzz", "Grace", "female", "American", legacy=True),
    PremadeVoice("t0jbNlBVZ17f02VDIeMI", "Jessie", "male", "American", legacy=True),
)


def premade_aliases(default_voice: str, by_gender: Mapping[str, str] | None = None) -> dict[str, str]:
    """Premade id → local voice id: the voice configured for its gender, else ``default_voice``."""
    by_gender = by_gender or {}
    return {v.voice_id: by_gender.get(v.gender, default_voice) for v in PREMADE_VOICES}
