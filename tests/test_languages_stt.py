"""Speech-to-text in other languages through the real server: ``language_code`` reaches the
decoder, a session without one has its language detected, English stays on the fast engine.

All non-English audio here is SYNTHETIC: espeak-ng reads the sentences (robotic speech, so the
WER bounds are loose and were measured on this very audio, with margin). ``EspeakEngine`` lists
only English voices, so ``speak`` below sets espeak-ng's voice by language on the same library.
The sentences were picked among several per language for what Whisper base both hears and
identifies from espeak's voice; Russian (the non-Latin script) is recognised when named, but
Whisper base identifies espeak's Russian as French, Polish or Russian at p < 0.6, so its
detection is not asserted.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import websockets

from speechwire.audio.resample import resample
from speechwire.audio.wav import read_wav, write_wav
from speechwire.bench.wer import wer
from speechwire.client.stt import paced_chunks
from speechwire.config import Settings
from speechwire.engines import espeak
from speechwire.engines.languages import (
    UnknownLanguage,
    available_languages,
    normalize_language,
    report_code,
)
from speechwire.server.ops.runner import RunningServer, start_server

from .conftest import speech_manifest

SENTENCES = {
    # language: (espeak voice, words per minute, sentence)
    "fr": (
        "fr",
        150,
        "Merci beaucoup, à demain matin. Je voudrais un café et un croissant, s'il vous plaît.",
    ),
    "de": ("de+m3", 150, "Guten Tag wie geht es Ihnen? Ich bin müde aber glücklich."),
    "es": ("es", 150, "Buenos días quisiera reservar una mesa para dos personas esta noche."),
    "ru": ("ru", 130, "Спасибо большое, до свидания! Сегодня хорошая погода."),
}
MAX_WER = {"fr": 0.7, "de": 0.5, "es": 0.7, "ru": 0.8}
"""Measured through the server on this synthetic audio (each test prints its own): realtime fr
0.38, de 0.00, es 0.27-0.36, ru 0.00, but in full-suite runs es reached 0.64 and batch ru 0.71:
Whisper base hears espeak-ng's voice at the edge, and a little numeric noise (two threads)
flips a word. The bounds stay below what the audio decoded as English scores (0.75-1.0); the
language reported and, for Russian, the script are the sharper checks."""
ISO3 = {"fr": "fra", "de": "deu", "es": "spa", "ru": "rus", "en": "eng"}


def speak(language: str) -> npt.NDArray[np.int16]:
    """The sentence for ``language`` as 16 kHz speech, synthesised by espeak-ng (synthetic)."""
    voice, wpm, text = SENTENCES[language]
    library = espeak._LIBRARY.get()
    data = text.encode()
    with espeak._LOCK:  # the library is a process-wide singleton: the engine's lock
        library.samples, library.words, library.stop = [], [], False
        espeak._select(library, voice)  # through the engine's cache of the loaded voice
        library.lib.espeak_SetParameter(espeak._PARAM_RATE, wpm, 0)
        buf = ctypes.create_string_buffer(data)
        library.lib.espeak_Synth(
            buf, len(data) + 1, 0, espeak._POS_CHARACTER, 0, espeak._CHARS_UTF8, None, None
        )
        samples, library.samples, library.words = library.samples, [], []
    pcm = np.concatenate(samples)
    out: npt.NDArray[np.int16] = resample(pcm, library.rate, 16000)
    return np.concatenate([np.zeros(4000, np.int16), out])  # a quarter second before speech


def words_of(text: str) -> list[str]:
    """Lower-case words in any script (the bench's normaliser keeps only a-z)."""
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def cyrillic_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum("\u0400" <= c <= "\u04ff" for c in letters) / max(1, len(letters))


async def stream(
    server: RunningServer,
    pcm: npt.NDArray[np.int16],
    query: str,
    *,
    realtime: bool,
    tail_s: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stream ``pcm`` (manual commit at the end); (session_started, every committed copy)."""
    url = f"{server.ws_url}/v1/speech-to-text/realtime?include_language_detection=true{query}"
    async with websockets.connect(url) as ws:
        started = json.loads(await ws.recv())
        async for piece in paced_chunks(pcm, 16000, 100, realtime, tail_silence_s=tail_s):
            message = {"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(piece).decode()}
            await ws.send(json.dumps(message))
        await ws.send(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True}))
        copies: list[dict[str, Any]] = []
        while not copies or copies[-1]["text"] == "":
            message = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert message["message_type"] != "invalid_request", message
            if message["message_type"] == "committed_transcript_with_timestamps":
                copies.append(message)
    return started, copies


def check_transcript(language: str, text: str) -> float:
    rate = word_error_rate(SENTENCES[language][2], text)
    print(f"{language}: WER {rate:.2f} for {text!r} (synthetic espeak-ng speech)")
    assert rate <= MAX_WER[language], f"{language}: WER {rate:.2f} > {MAX_WER[language]} for {text!r}"
    if language == "ru":
        assert cyrillic_share(text) > 0.9, f"not Cyrillic: {text!r}"
    else:
        assert cyrillic_share(text) == 0, f"not Latin: {text!r}"
    return rate


GIVEN = [("fr", "fr-FR"), ("de", "deu"), ("es", "ES"), ("ru", "rus")]


@pytest.mark.parametrize(("language", "code"), GIVEN, ids=[g[0] for g in GIVEN])
async def test_given_language_reaches_the_decoder(server: RunningServer, language: str, code: str) -> None:
    # Sent as fast as the socket takes it: the language is given, nothing waits for detection.
    started, copies = await stream(
        server, speak(language), f"&language_code={code}", realtime=False, tail_s=0.5
    )
    assert started["config"]["language_code"] == code  # echoed as the client sent it, as upstream
    text = " ".join(c["text"] for c in copies if c["text"])
    check_transcript(language, text)
    assert {c["language_code"] for c in copies} == {ISO3[language]}


DETECTED = ["fr", "de", "es"]


@pytest.mark.parametrize("language", DETECTED)
async def test_language_is_detected_without_language_code(
    server: RunningServer, language: str, caplog: pytest.LogCaptureFixture
) -> None:
    # At a microphone's pace, as a live client sends: detection runs while the speaker talks.
    caplog.set_level(logging.DEBUG, logger="speechwire.stt")
    started, copies = await stream(server, speak(language), "", realtime=True, tail_s=2.0)
    assert started["config"]["language_code"] is None
    text = " ".join(c["text"] for c in copies if c["text"])
    assert copies[-1]["language_code"] == ISO3[language], (copies, caplog.text)
    check_transcript(language, text)
    assert re.search(rf"language {language} detected \(p=[\d.]+\), engine whisper_base", caplog.text)


async def test_english_without_language_code_stays_on_the_fast_engine(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="speechwire.stt")
    utterance = next(u for u in speech_manifest() if u.path.name == "ls_1089-134691-0001.wav")
    pcm, _ = read_wav(utterance.path)
    _, copies = await stream(server, pcm, "", realtime=True, tail_s=1.0)
    text = " ".join(c["text"] for c in copies if c["text"])
    assert wer(utterance.transcript, text).rate <= 0.2, text
    assert {c["language_code"] for c in copies} == {"eng"}
    # Detection ran (English) and the session kept Moonshine, the fast default engine.
    assert re.search(r"language en detected \(p=[\d.]+\), engine moonshine", caplog.text), caplog.text
    assert "engine whisper_base" not in caplog.text


async def _refusal(server: RunningServer, query: str) -> tuple[dict[str, Any], int | None]:
    async with websockets.connect(f"{server.ws_url}/v1/speech-to-text/realtime?{query}") as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return message, ws.close_code


async def test_unknown_or_unhearable_language_is_invalid_request(server: RunningServer) -> None:
    message, code = await _refusal(server, "language_code=tlh")
    assert (message["message_type"], code) == ("invalid_request", 1008)
    assert "'tlh'" in message["error"] and "en, fr, de, es" in message["error"]
    assert "100 languages: whisper_base" in message["error"], message
    message, code = await _refusal(server, "model_id=speechwire_moonshine&language_code=fra")
    assert (message["message_type"], code) == ("invalid_request", 1008)
    assert "speechwire_moonshine" in message["error"] and "whisper_base" in message["error"], message


@pytest.fixture(scope="module")
def english_only() -> Iterator[RunningServer]:
    """A server with Moonshine alone: no engine hears French, and nothing can detect."""
    running = start_server(Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"]))
    yield running
    running.stop()


async def test_language_no_engine_hears_names_the_available_ones(english_only: RunningServer) -> None:
    message, code = await _refusal(english_only, "language_code=fr")
    assert (message["message_type"], code) == ("invalid_request", 1008)
    assert "Available: en (moonshine)" in message["error"] and "whisper_base" in message["error"], message


def test_codes_clients_send_are_normalised() -> None:
    for sent in ("fr", "FR", "fra", "fre", "fr-FR", "fr_CA", "French"):
        assert normalize_language(sent) == "fr", sent
    sent = ("en-US", "eng", "zh-Hans", "cmn", "yue-HK", "jv", "nb")
    assert [normalize_language(c) for c in sent] == ["en", "en", "zh", "zh", "yue", "jw", "no"]
    assert [report_code(c) for c in ("en", "fr", "zh", "jw", None)] == ["eng", "fra", "cmn", "jav", "eng"]
    with pytest.raises(UnknownLanguage, match="'xx-YY'"):
        normalize_language("xx-YY")


def test_available_languages_is_short() -> None:
    from speechwire.engines.moonshine import MoonshineEngine
    from speechwire.engines.whisper import WhisperEngine

    text = available_languages(
        {"moonshine": MoonshineEngine(), "whisper_base": WhisperEngine(multilingual=True)}
    )
    assert text.startswith("en (moonshine); en, fr, de, es, it, pt, nl, pl, ru, uk, zh, ja, …")
    assert text.endswith("(100 languages: whisper_base)") and len(text) < 120, text


# ---- batch: POST /v1/speech-to-text ------------------------------------------------------------


def _wav(pcm: npt.NDArray[np.int16]) -> bytes:
    out = io.BytesIO()
    write_wav(out, pcm, 16000)
    return out.getvalue()


def _batch(server: RunningServer, pcm: npt.NDArray[np.int16], **form: str) -> httpx.Response:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        files = {"file": ("speech.wav", _wav(pcm), "audio/wav")}
        return http.post("/v1/speech-to-text", data={"model_id": "scribe_v2", **form}, files=files)


@pytest.mark.parametrize("language", ["fr", "ru"])
def test_batch_with_language_code(server: RunningServer, language: str) -> None:
    r = _batch(server, speak(language), language_code=language)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["language_code"], body["language_probability"]) == (ISO3[language], 1.0)
    check_transcript(language, body["text"])


@pytest.mark.parametrize("language", ["de", "es"])
def test_batch_detects_the_language(server: RunningServer, language: str) -> None:
    started = time.monotonic()
    r = _batch(server, speak(language))
    assert r.status_code == 200, r.text
    body = r.json()
    # Whisper is less sure of espeak's voice than of people: 0.39 (de) and 0.9 (es) measured.
    assert body["language_code"] == ISO3[language] and body["language_probability"] > 0.25, body
    check_transcript(language, body["text"])
    print(f"batch {language} with detection: {time.monotonic() - started:.2f} s")


def test_batch_unknown_language_names_the_available_ones(server: RunningServer) -> None:
    r = _batch(server, speak("fr"), language_code="klingon")
    assert r.status_code == 400 and r.json()["detail"]["status"] == "unsupported_language", r.text
    assert "en, fr, de" in r.json()["detail"]["message"]
