"""Text-to-speech in other languages: ``language_code`` and the multilingual model ids pick a voice
that speaks the language (espeak-ng's, robotic), through the real server and the official SDK.

Which voice spoke is judged by the audio itself: espeak-ng voices of different languages take
very different times to say the same text (French says "Les oiseaux chantent dans le jardin." in
1.4 s, English espeak in 2.1 s, German in 2.3 s; English spells Cyrillic or Chinese out, 2-3 times
longer), so the audio's length, against the engine's own synthesis of the text with each voice,
tells them apart. Spanish, where lengths do not differ enough, is judged by the multilingual
Whisper engine (base): it identifies espeak's Spanish as Spanish (p 0.93) and its English reading
of the same text as English, and transcribes them at 10 % and 80 % WER. Whisper is no judge of
French: it transcribed espeak's English reading of a French sentence better than the French one.
Every speech here is synthetic (espeak-ng).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from elevenlabs.client import ElevenLabs

from speechwire.bench.wer import corpus_wer
from speechwire.engines.base import SynthesisOptions
from speechwire.engines.espeak import _VOICES, EspeakEngine
from speechwire.server.ops.runner import RunningServer

GEORGE = "JBFqnCBsd6RMkjVDRZzb"  # a premade id: spoken by Piper joe (English) by default
FRENCH = "Les oiseaux chantent dans le jardin."
GERMAN = "Er wurde 1995 geboren und ist 27 Jahre alt."  # German 5.3 s, English 4.2 s
RUSSIAN = "Привет, как дела? До свидания."  # Russian 2.1 s, English 5.4 s
CHINESE = "你好，今天天气很好。"  # Mandarin 2.5 s, English 5.5 s
SPANISH = "Buenos días, quiero reservar una mesa para dos personas."
RATE = 22050  # espeak-ng's rate: pcm_22050 is its audio unresampled
FLASH_CODES = (
    "en ja zh de hi fr ko pt it es id nl tr fil pl sv bg ro ar cs el fi hr ms sk da ta uk ru hu no vi"
)
FLASH_LANGUAGES = FLASH_CODES.split()  # Flash v2.5's 32 languages upstream


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    engine = EspeakEngine()
    engine.load()
    return engine


def seconds_of(engine: EspeakEngine, text: str, voice: str) -> float:
    return len(engine.synthesize(text, voice, SynthesisOptions()).pcm) / RATE


def assert_spoken_by(espeak: EspeakEngine, pcm: bytes, text: str, voice: str, others: list[str]) -> None:
    """The audio has about the length of ``voice`` saying ``text`` (within 30 %: the server
    splits the text at sentences and first words, and joins the pieces without espeak's pauses),
    and is at least twice as close to it as to any of ``others``."""
    heard = len(pcm) / 2 / RATE
    expected = seconds_of(espeak, text, voice)
    assert abs(heard - expected) <= 0.3 * expected, (heard, voice, expected)
    for other in others:
        wrong = seconds_of(espeak, text, other)
        assert 2 * abs(heard - expected) < abs(heard - wrong), (heard, voice, expected, other, wrong)


def stream_url(server: RunningServer, voice: str, route: str = "stream-input", **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in {"output_format": "pcm_22050", **query}.items())
    return f"{server.ws_url}/v1/text-to-speech/{voice}/{route}?{qs}"


async def session(url: str, frames: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Send ``frames``, read until the server closes: (messages, close code)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=2**24) as ws:
        try:
            for frame in frames:
                await ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            pass  # the server refused the session at once: its error frame is still to read
        try:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        except websockets.ConnectionClosed:
            pass
        return messages, ws.close_code


def audio_and_chars(messages: list[dict[str, Any]]) -> tuple[bytes, str]:
    audio = b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))
    chars = "".join("".join(m["alignment"]["chars"]) for m in messages if m.get("alignment"))
    return audio, chars


# ---- the engine --------------------------------------------------------------------------------


def test_every_flash_language_but_filipino_has_an_espeak_voice(espeak: EspeakEngine) -> None:
    voices = {v.language_code: v for v in espeak.voices()}
    missing = [code for code in FLASH_LANGUAGES if code not in voices]
    assert missing == ["fil"]  # espeak-ng's data has no Filipino (nor Tagalog)
    french = next(v for v in espeak.voices() if v.voice_id == "espeak-fr")
    assert (french.name, french.language, french.language_name) == (
        "espeak-ng French (France)",
        "fr-FR",
        "French",
    )
    assert french.labels["quality"] == "robotic" and "robotic" in french.description


def test_every_voice_loads_its_language(espeak: EspeakEngine, capfd: pytest.CaptureFixture[str]) -> None:
    """Each voice exists in the bundled data with its dictionary (espeak-ng only says on stderr
    when a dictionary is missing, and then speaks letter by letter)."""
    for voice in espeak.voices():
        synthesis = espeak.synthesize("1 2 3", voice.voice_id, SynthesisOptions())
        assert len(synthesis.pcm) > RATE // 10, voice.voice_id
        assert "".join(synthesis.alignment.chars) == "1 2 3"
    err = capfd.readouterr().err
    assert "Can't read" not in err and "dictionary" not in err.lower(), err
    assert len(_VOICES) == len(espeak.voices()) >= 90


def test_voice_switches_are_correct_under_concurrency(espeak: EspeakEngine) -> None:
    """The voice is process-wide state in libespeak-ng: threads alternating French and German
    must each get their own voice's audio (the lengths differ by 60 %)."""
    text = FRENCH
    expected = {v: seconds_of(espeak, text, v) for v in ("espeak-fr", "espeak-de")}
    assert expected["espeak-de"] > 1.3 * expected["espeak-fr"]
    wrong: list[tuple[str, float]] = []

    def run(first: str) -> None:
        voices = [first, "espeak-de" if first == "espeak-fr" else "espeak-fr"]
        for k in range(12):
            voice = voices[k % 2]
            got = seconds_of(espeak, text, voice)
            if abs(got - expected[voice]) > 0.01:
                wrong.append((voice, got))

    threads = [threading.Thread(target=run, args=(v,)) for v in ("espeak-fr", "espeak-de") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


# ---- WebSockets ----------------------------------------------------------------------------------


async def test_stream_input_language_code_speaks_french(server: RunningServer, espeak: EspeakEngine) -> None:
    """joe (English) with ``language_code=fr`` on a cloud model id: espeak-ng French speaks."""
    url = stream_url(server, "joe", model_id="eleven_flash_v2_5", language_code="fr", sync_alignment="true")
    messages, code = await session(url, [{"text": " "}, {"text": FRENCH + " ", "flush": True}, {"text": ""}])
    assert code == 1000 and messages[-1].get("isFinal") is True
    audio, chars = audio_and_chars(messages)
    assert chars == FRENCH + " "
    assert_spoken_by(espeak, audio, FRENCH, "espeak-fr", ["espeak-en", "espeak-de"])


@pytest.fixture(scope="module")
def multilingual_whisper() -> Any:
    from speechwire.engines.whisper import WhisperEngine

    engine = WhisperEngine(multilingual=True)
    engine.load()
    return engine


async def test_spanish_is_heard_as_spanish(server: RunningServer, multilingual_whisper: Any) -> None:
    url = stream_url(server, "joe", model_id="eleven_flash_v2_5", language_code="es")
    url = url.replace("pcm_22050", "pcm_16000")
    messages, code = await session(url, [{"text": " "}, {"text": SPANISH + " ", "flush": True}, {"text": ""}])
    assert code == 1000
    pcm = np.frombuffer(audio_and_chars(messages)[0], np.int16)
    language, probability = multilingual_whisper.detect_language(pcm)
    assert language == "es", (language, probability)
    heard = multilingual_whisper.recognize(pcm, language="es").text
    assert corpus_wer([(SPANISH, heard)]).rate <= 0.35, heard


async def test_without_language_code_the_voice_is_kept(server: RunningServer, espeak: EspeakEngine) -> None:
    """A French text and no ``language_code``: the requested voice reads it (English espeak)."""
    url = stream_url(server, "espeak-en", model_id="eleven_multilingual_v2")
    messages, code = await session(url, [{"text": " "}, {"text": FRENCH + " ", "flush": True}, {"text": ""}])
    assert code == 1000
    assert_spoken_by(espeak, audio_and_chars(messages)[0], FRENCH, "espeak-en", ["espeak-fr"])


async def test_multi_stream_input_language_code(server: RunningServer, espeak: EspeakEngine) -> None:
    """A premade voice with ``language_code=ru`` on multi-stream-input: espeak-ng Russian, in
    Cyrillic (a non-Latin script), for every context of the socket."""
    url = stream_url(server, GEORGE, "multi-stream-input", model_id="eleven_turbo_v2_5", language_code="ru")
    frames = [
        {"text": " ", "context_id": "a"},
        {"text": RUSSIAN + " ", "context_id": "a", "flush": True},
        {"close_context": True, "context_id": "a"},
        {"text": RUSSIAN + " ", "context_id": "b", "flush": True},
        {"close_socket": True},
    ]
    messages, code = await session(url, frames)
    assert code == 1000
    for cid in ("a", "b"):
        mine = [m for m in messages if m["contextId"] == cid]
        assert any(m.get("isFinal") for m in mine)
        audio, chars = audio_and_chars(mine)
        assert chars == RUSSIAN + " "
        assert_spoken_by(espeak, audio, RUSSIAN, "espeak-ru", ["espeak-en"])


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"language_code": "fil"}, "No local voice speaks language_code 'fil'"),
        ({"language_code": "x y"}, "not an ISO 639-1 language code"),
        ({"language_code": "fr", "model_id": "eleven_flash_v2"}, "speaks English only"),
    ],
)
async def test_bad_language_code_is_an_invalid_request(
    server: RunningServer, query: dict[str, str], says: str
) -> None:
    url = stream_url(server, "joe", **{k: v.replace(" ", "%20") for k, v in query.items()})
    messages, code = await session(url, [{"text": " "}])
    assert code == 1008
    assert messages[-1]["error"] == "invalid_request" and says in messages[-1]["message"]
    if "model_id" not in query:
        assert "Languages available: " in messages[-1]["message"] and " fr," in messages[-1]["message"]
    # The server goes on: the next session is served.
    ok, code = await session(stream_url(server, "espeak-en"), [{"text": " "}, {"text": "Hi. "}, {"text": ""}])
    assert code == 1000 and ok[-1].get("isFinal") is True


# ---- HTTP and the SDK ------------------------------------------------------------------------------


def test_http_body_language_code(server: RunningServer, espeak: EspeakEngine) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        chinese = {"text": CHINESE, "model_id": "eleven_v3", "language_code": "zh"}
        r = http.post(f"/v1/text-to-speech/{GEORGE}/with-timestamps?output_format=pcm_22050", json=chinese)
        assert r.status_code == 200, r.text
        result = r.json()
        assert "".join(result["alignment"]["characters"]) == CHINESE
        audio = base64.b64decode(result["audio_base64"])
        assert_spoken_by(espeak, audio, CHINESE, "espeak-zh", ["espeak-en", "espeak-ja"])
        body = {"text": FRENCH, "model_id": "eleven_multilingual_v2", "language_code": "fr"}
        r = http.post(f"/v1/text-to-speech/{GEORGE}/stream?output_format=pcm_22050", json=body)
        assert r.status_code == 200
        assert_spoken_by(espeak, r.content, FRENCH, "espeak-fr", ["espeak-en"])

        r = http.post("/v1/text-to-speech/joe", json={**body, "language_code": "tlh"})
        assert r.status_code == 400
        detail = r.json()["detail"]
        assert detail["status"] == "invalid_request" and "Languages available: " in detail["message"]
        r = http.post("/v1/text-to-speech/joe", json={**body, "model_id": "eleven_monolingual_v1"})
        assert r.status_code == 400 and "English only" in r.json()["detail"]["message"]
        # English on an English-only model is fine, and keeps the requested voice.
        r = http.post(
            "/v1/text-to-speech/joe", json={**body, "model_id": "eleven_flash_v2", "language_code": "en"}
        )
        assert r.status_code == 200 and r.content


def test_sdk_convert_with_language_code(server: RunningServer, espeak: EspeakEngine) -> None:
    """The official SDK's ``convert(language_code="de")`` with a premade voice: German speech."""
    client = ElevenLabs(api_key="x", base_url=server.http_url, timeout=120)
    audio = b"".join(
        client.text_to_speech.convert(
            voice_id=GEORGE,
            text=GERMAN,
            model_id="eleven_flash_v2_5",
            language_code="de",
            output_format="pcm_22050",
        )
    )
    assert_spoken_by(espeak, audio, GERMAN, "espeak-de", ["espeak-en", "espeak-fr"])


# ---- the catalogue ---------------------------------------------------------------------------------


def test_catalogue_lists_languages(server: RunningServer) -> None:
    with httpx.Client(base_url=server.http_url) as http:
        voices = {v["voice_id"]: v for v in http.get("/v1/voices").json()["voices"]}
        french = voices["espeak-fr"]
        assert french["name"] == "espeak-ng French (France)"
        assert french["labels"] == {
            "engine": "espeak",
            "quality": "robotic",
            "gender": "male",
            "accent": "france",
            "language": "fr-FR",
        }
        assert "robotic" in french["description"]
        models = {e["model_id"] for e in french["verified_languages"] if e["language"] == "fr"}
        assert {"eleven_flash_v2_5", "eleven_multilingual_v2", "speechwire_espeak"} <= models
        assert "eleven_flash_v2" not in models and "speechwire_piper" not in models
        assert voices["joe"]["labels"]["quality"] == "natural"
        assert voices[GEORGE]["labels"]["language"] == "en"

        found = http.get("/v2/voices", params={"language": "fr", "page_size": 100}).json()["voices"]
        assert {v["voice_id"] for v in found} == {"espeak-fr"}
        found = http.get("/v2/voices", params={"language": "pt-BR", "page_size": 100}).json()["voices"]
        assert {v["voice_id"] for v in found} == {"espeak-pt-br"}
        found = http.get("/v2/voices", params={"language": "pt", "page_size": 100}).json()["voices"]
        assert {v["voice_id"] for v in found} == {"espeak-pt", "espeak-pt-br"}

        models_by_id = {m["model_id"]: m for m in http.get("/v1/models").json()}
        flash = {x["language_id"]: x["name"] for x in models_by_id["eleven_flash_v2_5"]["languages"]}
        assert {c for c in FLASH_LANGUAGES if c != "fil"} <= set(flash) and flash["fr"] == "French"
        assert [x["language_id"] for x in models_by_id["eleven_flash_v2"]["languages"]] == ["en"]
        assert [x["language_id"] for x in models_by_id["speechwire_piper"]["languages"]] == ["en"]


def test_sdk_parses_the_catalogue(server: RunningServer) -> None:
    client = ElevenLabs(api_key="x", base_url=server.http_url)
    french = client.voices.get("espeak-fr")
    assert french.verified_languages and french.verified_languages[0].language == "fr"
    assert french.verified_languages[0].locale == "fr-FR"
    german = client.voices.search(language="de", page_size=100).voices
    assert [v.voice_id for v in german] == ["espeak-de"]
    langs = {m.model_id: m.languages for m in client.models.list()}
    assert any(lang.language_id == "ja" for lang in langs["eleven_v3"] or [])
