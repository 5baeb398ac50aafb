"""``speechwire bench languages``: how well each multilingual engine hears each language.

For every language a few fixed sentences are spoken by espeak-ng (synthetic, robotic speech:
espeak-ng is the only local voice for most of these languages), then transcribed in this
process by each multilingual engine twice over: once told the language (WER, or CER for the
scripts written without spaces between words) and once asked to identify it (Whisper's language
detection on the same audio, and on all of a language's sentences joined, since detection
improves with more speech). ``--server URL`` also streams each sentence through a running
server's realtime route with ``language_code`` and scores what it commits.

Synthetic speech biases the figures: espeak-ng pronounces every word the same clean, evenly
paced way with no noise, which helps; but its formant voice is unlike the human speech Whisper
was trained on and its letter-to-sound rules slip on some words, which hurts. Treat the figures
as a ranking of languages and engines, not as what human speech would score.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from rich.console import Console

from speechwire.bench.harness import machine, spread, table, write_json
from speechwire.bench.wer import WerResult, wer
from speechwire.engines.whisper import WhisperEngine

# Each language: (text espeak-ng speaks, reference to score against or None for the same text).
# Japanese is spoken from kana (espeak-ng reads no kanji) and scored against the usual spelling.
SENTENCES: dict[str, list[tuple[str, str | None]]] = {
    "en": [
        ("The train leaves the station every morning at seven.", None),
        ("Please close the window before you go to sleep.", None),
        ("My sister bought fresh bread at the market.", None),
    ],
    "fr": [
        ("Le train quitte la gare tous les matins à sept heures.", None),
        ("Fermez la fenêtre avant d'aller dormir, s'il vous plaît.", None),
        ("Ma sœur a acheté du pain frais au marché.", None),
    ],
    "de": [
        ("Der Zug verlässt den Bahnhof jeden Morgen um sieben Uhr.", None),
        ("Bitte schließe das Fenster, bevor du schlafen gehst.", None),
        ("Meine Schwester hat frisches Brot auf dem Markt gekauft.", None),
    ],
    "es": [
        ("El tren sale de la estación todas las mañanas a las siete.", None),
        ("Por favor, cierra la ventana antes de dormir.", None),
        ("Mi hermana compró pan fresco en el mercado.", None),
    ],
    "it": [
        ("Il treno parte dalla stazione ogni mattina alle sette.", None),
        ("Per favore, chiudi la finestra prima di dormire.", None),
        ("Mia sorella ha comprato il pane fresco al mercato.", None),
    ],
    "pt": [
        ("O comboio sai da estação todas as manhãs às sete horas.", None),
        ("Por favor, fecha a janela antes de ires dormir.", None),
        ("A minha irmã comprou pão fresco no mercado.", None),
    ],
    "nl": [
        ("De trein vertrekt elke ochtend om zeven uur van het station.", None),
        ("Doe alsjeblieft het raam dicht voordat je gaat slapen.", None),
        ("Mijn zus heeft vers brood gekocht op de markt.", None),
    ],
    "pl": [
        ("Pociąg odjeżdża ze stacji codziennie rano o siódmej.", None),
        ("Proszę zamknąć okno przed pójściem spać.", None),
        ("Moja siostra kupiła świeży chleb na targu.", None),
    ],
    "cs": [
        ("Vlak odjíždí z nádraží každé ráno v sedm hodin.", None),
        ("Prosím, zavři okno, než půjdeš spát.", None),
        ("Moje sestra koupila čerstvý chléb na trhu.", None),
    ],
    "ru": [
        ("Поезд уходит со станции каждое утро в семь часов.", None),
        ("Пожалуйста, закрой окно перед сном.", None),
        ("Моя сестра купила свежий хлеб на рынке.", None),
    ],
    "uk": [
        ("Потяг відходить зі станції щоранку о сьомій годині.", None),
        ("Будь ласка, зачини вікно перед сном.", None),
        ("Моя сестра купила свіжий хліб на ринку.", None),
    ],
    "el": [
        ("Το τρένο φεύγει από τον σταθμό κάθε πρωί στις επτά.", None),
        ("Σε παρακαλώ, κλείσε το παράθυρο πριν κοιμηθείς.", None),
        ("Η αδερφή μου αγόρασε φρέσκο ψωμί στην αγορά.", None),
    ],
    "tr": [
        ("Tren her sabah saat yedide istasyondan ayrılıyor.", None),
        ("Lütfen uyumadan önce pencereyi kapat.", None),
        ("Kız kardeşim pazardan taze ekmek aldı.", None),
    ],
    "sv": [
        ("Tåget lämnar stationen varje morgon klockan sju.", None),
        ("Stäng fönstret innan du går och lägger dig.", None),
        ("Min syster köpte färskt bröd på marknaden.", None),
    ],
    "da": [
        ("Toget forlader stationen hver morgen klokken syv.", None),
        ("Luk venligst vinduet, før du går i seng.", None),
        ("Min søster købte frisk brød på markedet.", None),
    ],
    "fi": [
        ("Juna lähtee asemalta joka aamu kello seitsemän.", None),
        ("Sulje ikkuna ennen kuin menet nukkumaan.", None),
        ("Siskoni osti tuoretta leipää torilta.", None),
    ],
    "hu": [
        ("A vonat minden reggel hétkor indul az állomásról.", None),
        ("Kérlek, csukd be az ablakot lefekvés előtt.", None),
        ("A nővérem friss kenyeret vett a piacon.", None),
    ],
    "ro": [
        ("Trenul pleacă din gară în fiecare dimineață la ora șapte.", None),
        ("Te rog să închizi fereastra înainte de culcare.", None),
        ("Sora mea a cumpărat pâine proaspătă de la piață.", None),
    ],
    "ar": [
        ("يغادر القطار المحطة كل صباح في الساعة السابعة.", None),
        ("من فضلك أغلق النافذة قبل أن تنام.", None),
        ("اشترت أختي خبزا طازجا من السوق.", None),
    ],
    "he": [
        ("הרכבת יוצאת מהתחנה כל בוקר בשעה שבע.", None),
        ("בבקשה סגור את החלון לפני שאתה הולך לישון.", None),
        ("אחותי קנתה לחם טרי בשוק.", None),
    ],
    "fa": [
        ("قطار هر روز صبح ساعت هفت از ایستگاه حرکت می‌کند.", None),
        ("لطفا قبل از خواب پنجره را ببند.", None),
        ("خواهرم از بازار نان تازه خرید.", None),
    ],
    "hi": [
        ("ट्रेन हर सुबह सात बजे स्टेशन से निकलती है।", None),
        ("कृपया सोने से पहले खिड़की बंद कर दो।", None),
        ("मेरी बहन ने बाज़ार से ताज़ी रोटी खरीदी।", None),
    ],
    "vi": [
        ("Tàu hỏa rời ga vào lúc bảy giờ mỗi sáng.", None),
        ("Làm ơn đóng cửa sổ trước khi đi ngủ.", None),
        ("Chị tôi đã mua bánh mì tươi ở chợ.", None),
    ],
    "id": [
        ("Kereta berangkat dari stasiun setiap pagi pukul tujuh.", None),
        ("Tolong tutup jendela sebelum kamu tidur.", None),
        ("Kakak saya membeli roti segar di pasar.", None),
    ],
    "ja": [
        ("でんしゃは まいあさ しちじに えきを でます。", "電車は毎朝七時に駅を出ます。"),
        ("ねる まえに まどを しめて ください。", "寝る前に窓を閉めてください。"),
        ("あねは いちばで あたらしい パンを かいました。", "姉は市場で新しいパンを買いました。"),
    ],
    "zh": [
        ("火车每天早上七点离开车站。", None),
        ("睡觉前请把窗户关上。", None),
        ("我姐姐在市场买了新鲜的面包。", None),
    ],
    "ko": [
        ("기차는 매일 아침 일곱 시에 역을 떠납니다.", None),
        ("자기 전에 창문을 닫아 주세요.", None),
        ("언니가 시장에서 신선한 빵을 샀어요.", None),
    ],
    "th": [
        ("รถไฟออกจากสถานีทุกเช้าเวลาเจ็ดโมง", None),
        ("กรุณาปิดหน้าต่างก่อนนอน", None),
        ("พี่สาวของฉันซื้อขนมปังสดที่ตลาด", None),
    ],
}
"""Everyday sentences, the same three in every language, with no digits (how a recogniser
writes a number would count as an error)."""

CHARACTER_SCORED = frozenset({"ja", "zh", "ko", "th"})
"""Scored by character error rate: no spaces between words (ja, zh, th), or words long enough
(ko) that one wrong syllable would count as a whole wrong word."""

ESPEAK_VOICES = {"zh": "cmn"}
"""espeak-ng's voice where its name is not the ISO 639-1 code (Mandarin is ``cmn``)."""

GAP = 4000
"""A quarter of a second of silence between sentences joined for detection."""

WPM = 175
"""espeak-ng's speaking rate (words a minute): its default, the server's espeak voices' rate."""

ENGINES: dict[str, Callable[[int], WhisperEngine]] = {
    "whisper_base": lambda threads: WhisperEngine(cpu_threads=threads, multilingual=True),
}
"""The multilingual engines this bench can score, by their ``stt_engines`` name."""


def tokens(text: str, by_character: bool) -> list[str]:
    """Case-folded words (or characters) with punctuation and symbols dropped, Unicode-aware
    (``wer.normalize`` keeps ASCII letters only, which would erase most of these languages)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    return list(re.sub(r"\s+", "", kept)) if by_character else kept.split()


def error_rate(reference: str, hypothesis: str, by_character: bool) -> WerResult:
    """``wer.wer``'s alignment on these tokens: each distinct token becomes an ASCII word that
    its English normaliser passes through unchanged, so the counting is the project's one."""
    ids: dict[str, str] = {}
    ref, hyp = (tokens(t, by_character) for t in (reference, hypothesis))
    coded = [" ".join(ids.setdefault(t, f"t{len(ids)}x") for t in side) for side in (ref, hyp)]
    return wer(*coded)


def synthesize(items: Sequence[tuple[str, str]], wpm: int = WPM) -> list[npt.NDArray[np.int16]]:
    """16 kHz speech for each (language, text), by espeak-ng in a child process.

    A child, because libespeak-ng holds one process-wide callback that the server's espeak
    engine owns when it runs in this process: setting another here would take it away."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_speak_all, list(items), wpm).result()


def _speak_all(items: list[tuple[str, str]], wpm: int) -> list[npt.NDArray[np.int16]]:
    import ctypes
    import os

    import espeakng_loader

    from speechwire.audio.resample import resample

    lib = ctypes.CDLL(espeakng_loader.get_library_path(), mode=os.RTLD_LOCAL)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # synchronous
    if rate <= 0:
        raise RuntimeError("espeak-ng failed to initialise")
    chunks: list[npt.NDArray[np.int16]] = []

    def on_audio(wav: ctypes._Pointer[ctypes.c_short] | None, count: int, _events: int | None) -> int:
        if count > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16, copy=True))
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    keep = callback(on_audio)
    lib.espeak_SetSynthCallback(keep)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    out = []
    for language, text in items:
        voice = ESPEAK_VOICES.get(language, language)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} for {language!r}")
        lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE, absolute
        chunks.clear()
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        lib.espeak_Synth(buf, len(data) + 1, 0, 1, 0, 1, None, None)  # character positions, UTF-8
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        out.append(resample(pcm, int(rate), 16000))
    return out


@dataclass
class Score:
    """One engine on one language."""

    language: str
    errors: WerResult = field(default_factory=lambda: WerResult(0, 0, 0, 0))
    detected: list[str] = field(default_factory=list)
    detected_joined: str = ""
    """The language detected on all its sentences at once (a few seconds more speech)."""
    clips: list[npt.NDArray[np.int16]] = field(default_factory=list)
    """Its sentences' audio, each followed by a short gap, for ``detected_joined``."""
    decode_s: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    server: WerResult | None = None
    """What a server's realtime route committed (``--server``)."""

    @property
    def metric(self) -> str:
        return "cer" if self.language in CHARACTER_SCORED else "wer"

    @property
    def rtf(self) -> float:
        """Decode time over audio time: under 1 is faster than real time."""
        return sum(self.decode_s) / self.audio_s if self.audio_s else float("nan")

    def figures(self) -> dict[str, object]:
        p50, p95, _ = spread(self.decode_s, 1000)
        return {
            "language": self.language,
            "metric": self.metric,
            "rate": self.errors.rate,
            "errors": self.errors.errors,
            "units": self.errors.words,
            "detected_right": sum(d == self.language for d in self.detected),
            "detected": self.detected,
            "detected_joined": self.detected_joined,
            "decode_ms_p50": round(p50, 1),
            "decode_ms_p95": round(p95, 1),
            "rtf": round(self.rtf, 3),
            "server_rate": self.server.rate if self.server is not None else None,
        }

    def row(self, engine: str) -> list[str]:
        right = sum(d == self.language for d in self.detected)
        p50, _, _ = spread(self.decode_s, 1000)
        cells = [engine, self.language, self.metric, f"{self.errors.rate:.1%}"]
        cells += [f"{right}/{len(self.detected)}", self.detected_joined, f"{p50:.0f}", f"{self.rtf:.2f}"]
        return cells + ([f"{self.server.rate:.1%}"] if self.server is not None else [])


async def _stream(url: str, pcm: npt.NDArray[np.int16], language: str) -> str:
    """What a server commits for ``pcm`` streamed with ``language_code`` (manual commit)."""
    from speechwire.client.stt import RealtimeTranscriber, paced_chunks

    async with RealtimeTranscriber(url, commit_strategy="manual", language_code=language) as stt:
        await stt.stream_pcm(paced_chunks(pcm, 16000, 100, realtime=False))
        committed = await stt.finish(timeout=60)  # a loaded machine, and an engine loading on first use
    return committed.text if committed is not None else ""


def _chosen(value: str, known: Sequence[str], what: str) -> list[str]:
    names = list(known) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def run_languages_bench(args: argparse.Namespace) -> int:
    console = Console()
    languages = _chosen(args.languages, list(SENTENCES), "language")
    engine_names = _chosen(args.engines, list(ENGINES), "engine")
    items = [(code, spoken) for code in languages for spoken, _ in SENTENCES[code][: args.sentences]]
    console.print(
        f"[bold]Synthetic speech[/bold]: {len(items)} sentences spoken by espeak-ng (robotic); "
        "engines run in this process" + (f", and streamed to {args.server}" if args.server else "")
    )
    audio = synthesize(items)
    scores: dict[str, dict[str, Score]] = {}
    sentences: list[dict[str, object]] = []
    for name in engine_names:
        engine = ENGINES[name](args.threads)
        engine.load()
        for (code, spoken), pcm in zip(items, audio, strict=True):
            reference = dict(SENTENCES[code])[spoken] or spoken
            by_character = code in CHARACTER_SCORED
            score = scores.setdefault(name, {}).setdefault(code, Score(code))
            start = time.perf_counter()
            heard = engine.recognize(pcm, language=code).text
            score.decode_s.append(time.perf_counter() - start)
            score.audio_s += len(pcm) / 16000
            score.errors += error_rate(reference, heard, by_character)
            detected, probability = engine.detect_language(pcm)
            score.detected.append(detected)
            score.clips += [pcm, np.zeros(GAP, np.int16)]
            sentence: dict[str, object] = {
                "engine": name,
                "language": code,
                "reference": reference,
                "heard": heard,
                "detected": detected,
                "detected_probability": round(probability, 3),
                "decode_ms": round(1000 * score.decode_s[-1], 1),
                "audio_s": round(len(pcm) / 16000, 2),
            }
            if args.server:
                streamed = asyncio.run(_stream(args.server, pcm, code))
                served = error_rate(reference, streamed, by_character)
                score.server = served if score.server is None else score.server + served
                sentence["server_heard"] = streamed
            sentences.append(sentence)
            if args.show:
                console.print(f"{name} {code}: {heard}  [detected {detected} {probability:.2f}]")
        for score in scores[name].values():
            score.detected_joined, _ = engine.detect_language(np.concatenate(score.clips))
    columns = ["engine", "language", "metric", "error rate", "detected", "on all", "decode p50 ms", "RTF"]
    columns += ["server error rate"] if args.server else []
    rows = [score.row(name) for name, by_language in scores.items() for score in by_language.values()]
    title = "Multilingual STT on synthetic espeak-ng speech (in-process engine calls)"
    console.print(table(title, columns, rows, right_from=3))
    write_json(
        args.json,
        {
            "machine": machine(),
            "speech": "synthetic, espeak-ng",
            "engine_calls": "in-process" + (f"; also streamed to {args.server}" if args.server else ""),
            "cpu_threads": args.threads,
            "engines": {
                name: [score.figures() for score in by_language.values()]
                for name, by_language in scores.items()
            },
            "sentences": sentences,
        },
    )
    return 0
