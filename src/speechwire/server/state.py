"""The state every route shares, kept on ``app.state`` by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import ASGIApp

from speechwire.config import Settings
from speechwire.engines.base import STTEngine
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry


@dataclass
class ServerState:
    """Settings, the engine registry, and the engine worker pool."""

    settings: Settings
    registry: EngineRegistry
    tts_pool: EnginePool
    stt_engines: dict[str, STTEngine] = field(default_factory=dict)
    stt_pool: EnginePool | None = None


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state
