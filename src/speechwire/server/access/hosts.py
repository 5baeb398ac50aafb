"""Which names this server answers to.

Why a Host check: the Origin check admits a page whose origin is the server's own (its host
equals the ``Host`` header). A DNS-rebinding page (``http://attacker.example`` re-pointed at
127.0.0.1) is, to the browser, its own origin, so Origin and Host agree and only the *name* gives
it away: no server of ours is called ``attacker.example``. IP literals cannot be re-pointed and
loopback names are resolved by the browser itself, so those always pass; any other name must be
listed (``allowed_hosts``).

Where it is checked: on a server without keys (its door is open to whoever reaches it) and on any
server with ``allowed_hosts`` set, every request (``HostCheck``). On a keyed server without the
list, programs may use any name (they hold a key; rebinding is a browser's doing) and the Origin
check counts a page as the server's own only at a name that passes here (``auth.origin_allowed``),
which is what page tokens and sessions from the server's own page depend on.
"""

from __future__ import annotations

import ipaddress
import json

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

HOST_NOT_ALLOWED = "host_not_allowed"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def host_name(header: str) -> str:
    """``Host`` without its port, lower case, no trailing dot: ``[::1]:80`` → ``::1``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        return bool(ipaddress.ip_address(name))
    except ValueError:
        return False


def host_allowed(header: str | None, allowed: list[str]) -> bool:
    """Whether a request for ``header`` is one for this server (see the module docstring)."""
    if header is None:
        return True  # HTTP/1.0 without Host: not a browser, nothing to rebind
    name = host_name(header)
    if _is_ip(name) or name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    patterns = (entry.strip().lower().rstrip(".") for entry in allowed)
    return any(p in ("*", name) or (p.startswith("*.") and name.endswith(p[1:])) for p in patterns)


class HostCheck:
    """Refuse HTTP requests and WebSocket handshakes for names this server does not serve, with
    400 in the HTTP API's error shape (``{"detail": {"status", "message"}}``)."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = list(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host_allowed(header, self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": HOST_NOT_ALLOWED})
            return
        message = (
            "This server does not answer to that host name; its operator lists the names it "
            "serves in SPEECHWIRE_ALLOWED_HOSTS."
        )
        body = json.dumps({"detail": {"status": HOST_NOT_ALLOWED, "message": message}}).encode()
        await Response(body, 400, media_type="application/json")(scope, receive, send)
