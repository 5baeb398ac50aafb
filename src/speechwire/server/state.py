"""The state every route shares, kept on ``app.state`` by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp

from speechwire.config import Settings
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry


@dataclass
class ServerState:
    """Settings, the engine registry, and the engine worker pool."""

    settings: Settings
    registry: EngineRegistry
    tts_pool: EnginePool


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state
