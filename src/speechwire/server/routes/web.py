"""The browser parts: ES modules under ``/web/`` and the demo page at ``/``.

Served as plain files (no build step), so a page elsewhere can import them straight from a
running server: ``import { TTSPlayer } from "http://host:8000/web/speechwire.js"``.

The page carries a Content-Security-Policy: it loads only its own modules, styles and
AudioWorklets and talks only to its own server (``'self'`` covers ``ws:``/``wss:`` of the same
host), so an injected script or a frame on someone else's site gets nothing from it. The modules
themselves carry no policy of their own (a CSP on a script does not apply to the page importing
it), only ``nosniff``, like every response.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",  # modules and AudioWorklet modules (worklets follow script-src)
        "style-src 'self'",
        "img-src 'self' data:",  # the empty data: favicon
        "connect-src 'self'",  # fetch and WebSocket to this server only
        "media-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",  # no clickjacking frame around the microphone button
    )
)
PAGE_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": PAGE_POLICY,
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate it
    "referrer-policy": "no-referrer",
}


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every HTTP response: a browser must take a body for
    what its content type says (JSON is never run as a script, audio never as a page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":  # WebSocket and lifespan messages pass as they are
                MutableHeaders(scope=message)["x-content-type-options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_header)


def mount(app: FastAPI) -> None:
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)
