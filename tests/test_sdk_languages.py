"""The official Python SDK's Scribe helper (``client.speech_to_text.realtime.connect``) against our
server, in French: with ``language_code`` set, and without it (the language is detected).

The French audio is SYNTHETIC (espeak-ng, through ``tests/test_languages_stt.py``'s ``speak``).
The helper maps http:// to ws://, so the plain-HTTP session server works.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from speechwire.client.stt import paced_chunks
from speechwire.server.ops.runner import RunningServer

from .test_languages_stt import check_transcript, speak


async def transcribe_with_sdk(server: RunningServer, options: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Stream the French sentence at a microphone's pace, then commit; (session configs, commits
    with their language)."""
    from elevenlabs.client import AsyncElevenLabs
    from elevenlabs.realtime import AudioFormat, CommitStrategy, RealtimeEvents

    client = AsyncElevenLabs(api_key="unused-locally", base_url=server.http_url)
    started: list[Any] = []
    stamped: list[Any] = []
    errors: list[Any] = []
    connection = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": AudioFormat.PCM_16000,
            "sample_rate": 16000,
            "commit_strategy": CommitStrategy.MANUAL,
            "include_language_detection": True,
            **options,
        }
    )
    connection.on(RealtimeEvents.SESSION_STARTED, started.append)
    connection.on(RealtimeEvents.COMMITTED_TRANSCRIPT_WITH_TIMESTAMPS, stamped.append)
    connection.on(RealtimeEvents.ERROR, errors.append)
    async for piece in paced_chunks(speak("fr"), 16000, 100, tail_silence_s=2.0):
        await connection.send({"audio_base_64": base64.b64encode(piece.tobytes()).decode()})
    await connection.commit()
    for _ in range(150):
        if stamped or errors:
            break
        await asyncio.sleep(0.1)
    await connection.close()
    assert not errors, errors
    assert stamped, "the SDK saw no committed_transcript_with_timestamps"
    return started, stamped


@pytest.mark.parametrize("language_code", ["fr", None], ids=["language_code=fr", "detected"])
async def test_sdk_scribe_helper_in_french(server: RunningServer, language_code: str | None) -> None:
    options = {"language_code": language_code} if language_code else {}
    started, stamped = await transcribe_with_sdk(server, options)
    assert started and started[0]["config"]["language_code"] == language_code
    text = " ".join(m["text"] for m in stamped if m["text"])
    check_transcript("fr", text)
    assert stamped[-1]["language_code"] == "fra", stamped
