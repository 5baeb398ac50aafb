"""The ASGI application: routes, shared engine state, and start-up/shut-down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from speechwire import __version__
from speechwire.config import Settings
from speechwire.engines.base import STTEngine, TTSEngine
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry
from speechwire.server.state import ServerState

log = logging.getLogger("speechwire.server")


def build_engines(settings: Settings) -> list[TTSEngine]:
    """Instantiate the configured local engines (imports are lazy: only what is used loads)."""
    engines: list[TTSEngine] = []
    for name in settings.tts_engines:
        if name == "piper":
            from speechwire.engines.piper import PiperEngine

            engines.append(PiperEngine(threads=settings.piper_threads))
        elif name == "espeak":
            from speechwire.engines.espeak import EspeakEngine

            engines.append(EspeakEngine())
        else:
            raise ValueError(f"unknown TTS engine {name!r} (known: piper, espeak)")
    return engines


def build_stt_engines(settings: Settings) -> dict[str, STTEngine]:
    engines: dict[str, STTEngine] = {}
    for name in settings.stt_engines:
        if name == "moonshine":
            from speechwire.engines.moonshine import MoonshineEngine

            engines[name] = MoonshineEngine(instances=settings.stt_workers)
        elif name == "whisper":
            from speechwire.engines.whisper import WhisperEngine

            engines[name] = WhisperEngine(cpu_threads=settings.piper_threads)
        elif name == "whisper_base":
            from speechwire.engines.whisper import WhisperEngine

            engines[name] = WhisperEngine(cpu_threads=settings.piper_threads, multilingual=True)
        else:
            raise ValueError(f"unknown STT engine {name!r} (known: moonshine, whisper, whisper_base)")
    return engines


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; engines load at start-up so the first request pays no loading cost."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engines = build_engines(settings)
        for engine in engines:
            engine.load()
        registry = EngineRegistry(engines, settings.tts_default_voice, settings.tts_voice_aliases)
        pool = EnginePool(settings.tts_workers, name="tts")
        stt_engines = build_stt_engines(settings)
        for stt in stt_engines.values():
            stt.load()
        stt_pool = EnginePool(settings.stt_workers, name="stt")
        app.state.speechwire = ServerState(settings, registry, pool, stt_engines, stt_pool)
        log.info("engines ready: %s", ", ".join(registry.engines))
        try:
            yield
        finally:
            pool.close()
            stt_pool.close()

    app = FastAPI(title="speechwire", version=__version__, lifespan=lifespan)

    from speechwire.server import auth, catalog, stt_ws, tts_http, tts_multi, tts_ws, web

    app.include_router(auth.router)
    app.include_router(catalog.router)
    app.include_router(tts_ws.router)
    app.include_router(tts_http.router)
    app.include_router(tts_multi.router)
    app.include_router(stt_ws.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    web.mount(app)
    return app
