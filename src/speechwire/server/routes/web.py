"""The browser parts: ES modules under ``/web/`` and the demo page at ``/``.

Served as plain files (no build step), so a page elsewhere can import them straight from a
running server: ``import { TTSPlayer } from "http://host:8000/web/speechwire.js"``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def mount(app: FastAPI) -> None:
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"cache-control": "no-cache"})
