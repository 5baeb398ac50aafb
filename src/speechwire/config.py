"""Settings from the environment and ``.env`` (prefix ``SPEECHWIRE_``)."""

from __future__ import annotations

import json
import os
import re
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

EXAMPLE_API_KEY = "sw_replace-with-a-long-random-key"
"""``.env.example``'s placeholder for ``SPEECHWIRE_API_KEYS``: published, so never a key."""
EXAMPLE_ELEVENLABS_KEY = "your-elevenlabs-api-key-here"
"""``.env.example``'s placeholder for ``ELEVENLABS_API_KEY``."""
MIN_API_KEY_CHARS = 24
"""Shortest key accepted: ``secrets.token_urlsafe(32)`` gives 43 characters; a short key is
a password someone typed, and guessable."""
MIN_SECRET_CHARS = 16
"""Shortest ``ELEVENLABS_API_KEY`` accepted: every secret the server holds is blanked in its logs,
which only works for a secret too long to be an ordinary word."""
KEY_COMMAND = "python -c \"import secrets; print('sw_' + secrets.token_urlsafe(32))\""
"""How to make a key, quoted in every message that refuses one."""
_PLACEHOLDER_WORDS = ("replace", "your-", "your_", "changeme", "change-me", "placeholder", "example")


def looks_like_placeholder(value: str) -> bool:
    """Whether ``value`` is a template's stand-in (``.env.example``'s, or one like it) rather than
    a secret: copying the example file must never leave a publicly known key in force."""
    lowered = value.strip().lower()
    return lowered in (EXAMPLE_API_KEY, EXAMPLE_ELEVENLABS_KEY) or any(
        word in lowered for word in _PLACEHOLDER_WORDS
    )


class BadSetting(ValueError):
    """A setting that cannot be read: one line naming the variable and the form it takes (never
    the value, which may be a key)."""


def _comma_or_json(value: object) -> object:
    """``a,b`` or ``["a", "b"]``: people type the first, the documentation showed the second."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_or_json)]
"""A list setting given as ``a,b,c`` or as a JSON list."""


def env_name(field: str) -> str:
    """The variable that sets ``field`` (``ELEVENLABS_API_KEY`` keeps its upstream name)."""
    return "ELEVENLABS_API_KEY" if field == "elevenlabs_api_key" else f"SPEECHWIRE_{field.upper()}"


def _expected_form(annotation: Any) -> str:
    """What a value of ``annotation`` looks like, in words for the one-line error."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _expected_form(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected_form(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is list:
        return 'a comma-separated list (a,b) or a JSON list (["a", "b"])'
    if origin is dict:
        return 'a JSON object ({"name": "value"})'
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", SecretStr: "text"}
    return names.get(annotation, str(annotation))


def _cores() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``SPEECHWIRE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SPEECHWIRE_", env_file=".env", extra="ignore")

    tts_engines: CommaList = Field(default_factory=lambda: ["piper", "espeak"])
    """Local TTS engines to load, in order; the first one's first voice is not necessarily default."""
    tts_default_voice: str = "joe"
    tts_voice_aliases: dict[str, str] = Field(default_factory=dict)
    """Extra voice ids (for example ElevenLabs ids your code already uses) mapped to local voices."""
    tts_premade_voices: dict[str, str] = Field(default_factory=dict)
    """Local voice for ElevenLabs' premade voices by gender (``{"female": "espeak-en"}``); the
    ones not given speak with ``tts_default_voice``. ``tts_voice_aliases`` wins for single ids.
    Table: docs/voices.md."""
    tts_unknown_voice: str | None = None
    """A local voice for voice ids that are neither local, aliased nor premade (a cloned voice's
    id, say). Unset: such ids get ``voice_not_found`` naming the settings that map them."""
    piper_threads: int = Field(default_factory=lambda: min(2, _cores()))
    """onnxruntime intra-op threads per Piper synthesis: explicit, so engines don't fight for cores."""
    tts_workers: int = 1
    """Engine calls that run at once; each uses ``piper_threads`` cores."""
    quick_first_words: int = 2
    """Words split off the start of a turn so its first audio is ready sooner (0 turns it off)."""
    max_message_bytes: int = 1 << 20
    """Largest client frame accepted; larger ones get the protocol's error and close 1008."""
    max_buffer_chars: int = 100_000
    # Multi-stream bounds (issue 14)
    max_socket_queued_chars: int = 200_000
    """Text waiting for synthesis on one ``multi-stream-input`` socket, over all its contexts
    (closed ones still being voiced included); past it the socket ends with ``queue_overflow``.
    Each context alone is held to ``max_buffer_chars`` (past it only that context ends)."""
    max_finishing_contexts: int = 16
    """Closed contexts of one socket still being voiced; opening another past it ends the socket
    with ``queue_overflow`` (each holds a speaker and an encoder until its final)."""
    stt_engines: CommaList = Field(default_factory=lambda: ["moonshine", "whisper", "whisper_base"])
    """Local STT engines to load; the first is what ``scribe_v2_realtime`` maps to for English,
    ``whisper_base`` (multilingual) serves every other ``language_code``."""
    stt_workers: int = Field(default_factory=lambda: min(2, _cores()))
    """STT decodes that run at once, one per core (a separate pool from TTS, so a long decode never
    delays speech)."""
    stt_max_chunk_seconds: float = 5.0
    """Largest audio chunk accepted; larger ones get ``chunk_size_exceeded``."""
    stt_inactivity_timeout_s: float | None = 20.0
    """A realtime STT socket that sends no message for this long is closed with ``input_error``
    (any ``input_audio_chunk`` keeps it alive, an empty one included). Upstream closes idle
    Scribe sessions, and ElevenLabs' WebSockets idle out after 20 s; an idle socket would hold
    an engine slot for ``max_session_s`` otherwise. ``None`` turns it off (issue 14)."""
    stt_detect_after_s: float = 2.0
    """A realtime session without ``language_code`` has its language detected (Whisper base,
    when loaded) from this much speech, or at its first commit if sooner, while the default
    engine goes on decoding; commits never wait for it. Shorter detects on less audio (Whisper's
    guess on synthetic speech was wrong more often at 1 s than at 2 s), longer leaves more first
    phrases to the English engine."""
    stt_max_upload_bytes: int = 200 << 20
    """Largest ``POST /v1/speech-to-text`` body (200 MiB: over an hour of 16 kHz WAV); larger
    uploads get 413 before they are read in full. Upstream takes up to 3 GB, but decodes it on
    a cluster, not on the 2 cores this server may share."""
    max_read_bytes_per_s: int = 256 << 10
    """How fast one WebSocket's frames are read once it has sent ``4 * max_message_bytes`` in a
    burst (over a minute and a half of 16 kHz audio): text at LLM speed, and 48 kHz audio at
    real time (128 KB/s in base64), are below it; a socket flooding megabytes of text cannot take
    the event loop's time from every other session (issue 14: at 1 MiB/s a healthy session's first
    audio during such a flood was 2-3x its idle value, at 256 KiB/s within 2x). Past it, frames are
    only read later (TCP slows the sender); nothing is refused."""
    send_timeout_s: float = 10.0
    """A client that takes no data for this long is disconnected (its session ends)."""
    max_sessions: int = 64
    """Open WebSocket sessions (TTS and STT together) beyond which new ones are refused with
    ``resource_exhausted`` and close 1013, instead of every session slowing down."""
    max_tts_sessions: int = Field(default_factory=lambda: 8 * _cores())
    """Local TTS sessions admitted at once: what the engines keep real-time (16 measured on 2
    cores by ``speechwire bench load``: 8 a core). More get ``resource_exhausted`` (1013)."""
    max_stt_sessions: int = Field(default_factory=lambda: 3 * _cores())
    """Local STT sessions admitted at once (6 real-time streams measured on 2 cores: 3 a core)."""
    drain_s: float = 10.0
    """On SIGTERM, how long open sessions may take to finish before they are closed with 1001."""
    ping_interval_s: float = 10.0
    """WebSocket pings from the server; a peer that misses ``ping_timeout_s`` is dropped, so dead
    connections (a laptop lid closed) free their session within seconds, not TCP's minutes."""
    ping_timeout_s: float = 10.0
    api_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_comma_or_json)] = Field(
        default_factory=list
    )
    """Keys that open sessions and mint single-use tokens (``SPEECHWIRE_API_KEYS``: comma-separated
    or a JSON list).
    Without any, the server runs only with ``dev`` set, and only on loopback."""
    dev: bool = False
    """Development switch: allows running without API keys (then everyone is admitted), on a loopback
    address only; with keys set it changes nothing."""
    allowed_origins: CommaList = Field(default_factory=list)
    """Browser origins allowed to open sessions (``Origin`` header), besides the server's own;
    ``["*"]`` allows any. Connections without an Origin (programs, not browsers) are unaffected."""
    page_tokens: bool = False
    """With API keys set, let the demo page (an allowed origin) mint single-use tokens without a
    key: anyone who can load the page can then use the server, so put your own login before it."""
    token_ttl_s: float = 900.0
    """Lifetime of an unused single-use token (upstream: 15 minutes)."""
    rate_sessions_per_minute: float = 120.0
    """New sessions per key (per client address on a dev server) per minute, on average…"""
    rate_burst: int = 20
    """…with bursts of this many."""
    max_sessions_per_key: int = 16
    """Open sessions one key may hold at once."""
    max_session_s: float = 3600.0
    """Longest a WebSocket session may last; then it ends with ``session_time_limit_exceeded``."""
    redis_url: SecretStr | None = None
    """``redis://host:6379/0``: single-use tokens and per-key limits shared by every replica
    behind a load balancer (in memory, per process, when unset)."""
    shared_lease_s: float = Field(default=15.0, ge=1.0, le=3600.0)
    """With ``redis_url``: each open session is a lease its replica renews every third of this; a
    killed replica's sessions stop counting against their key within it."""
    elevenlabs_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ELEVENLABS_API_KEY", "SPEECHWIRE_ELEVENLABS_API_KEY")
    )
    """The server's key for the ElevenLabs cloud (``ELEVENLABS_API_KEY``). Never sent to clients."""
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    tts_backend: Literal["local", "elevenlabs"] = "local"
    """Where TTS sessions go by default: local engines, or relayed to the cloud."""
    stt_backend: Literal["local", "elevenlabs"] = "local"
    elevenlabs_models: list[str] = Field(default_factory=list)
    """Model ids relayed to the cloud whatever the backend (for example ``["eleven_v3"]``)."""
    # Behind a load balancer (issue 17)
    drain_notice_s: float = 0.0
    """On SIGTERM, how long ``/readyz`` reports ``draining`` while the listener stays open and new
    sessions are still admitted, before the drain (``drain_s``) starts: time for a balancer's
    health checks to stop sending sessions here (``deploy/haproxy.cfg``: 1 s). With 0 a session
    already on its way when the listener closes is refused (``resource_exhausted``, which the
    project's clients retry). Under Kubernetes a ``preStop`` sleep does this waiting instead."""
    # Resource limits (issue 14)
    max_preauth_message_bytes: int = 16 << 10
    """Largest first message from a WebSocket that presents no credential in its request, on a
    server with keys (the TTS first message may carry ``xi_api_key``; the SDKs' is ~300 bytes):
    a caller nobody has identified yet costs a few KB, not ``max_message_bytes``."""
    max_unauthenticated_per_address: int = 16
    """WebSockets from one client address still waiting to authenticate (the TTS first-message
    key waits up to 10 s); more are refused at once with ``rate_limited`` (1013)."""
    max_unauthenticated: int = 256
    """Same, for the whole server."""
    max_http_body_bytes: int = 1 << 20
    """Largest HTTP request body (``max_message_bytes``: a 40,000-character text fits in 250 KB
    of JSON); larger ones get 413 before they are read. ``POST /v1/speech-to-text`` has
    ``stt_max_upload_bytes``."""
    key_engine_share: float = 0.75
    """Fraction of ``max_tts_sessions`` and ``max_stt_sessions`` one key may hold (at least one
    session), so one key never takes every engine slot and another key still gets in."""
    header_timeout_s: float = 5.0
    """A connection that has not sent its request headers within this long is dropped (slowloris:
    a peer dribbling header bytes would otherwise hold its connection for ever)."""
    max_connections: int = 1024
    """Open connections (HTTP and WebSocket) beyond which new HTTP requests get 503 and new
    WebSockets are refused (uvicorn's ``limit_concurrency``); a reverse proxy should cap too."""
    # Access (issue 14)
    allowed_hosts: CommaList = Field(default_factory=list)
    """Host names this server answers to (the ``Host`` header) besides loopback names and IP
    addresses, e.g. ``speech.example.com,*.example.org``; ``*`` turns the check off. That is how a
    DNS-rebinding page, whose name now points at this server, is told apart from a page this
    server serves. A server without keys, or with this list, refuses a request for any other name
    (400); a keyed server without it serves programs by any name but counts a browser page as its
    own only at a listed name."""
    trusted_proxies: CommaList = Field(default_factory=list)
    """Addresses (or networks, ``10.0.0.0/8``) of reverse proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed; nobody's by default, so a client cannot pick the address
    its rate limit is counted against."""

    _ignored_elevenlabs_placeholder: bool = PrivateAttr(default=False)

    def __init__(self, **values: Any) -> None:
        """As pydantic-settings builds it, but a bad value is one ``BadSetting`` line."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise BadSetting(_explain(exc)) from None
        except SettingsError as exc:
            match = re.search(r'field "(\w+)"', str(exc))
            field = match.group(1) if match else "?"
            raise BadSetting(_explain_field(field, "cannot be parsed")) from None

    @model_validator(mode="after")
    def _drop_elevenlabs_placeholder(self) -> Settings:
        """``ELEVENLABS_API_KEY=your-elevenlabs-api-key-here`` (a copied ``.env.example``) means
        "no cloud key": sending it upstream would only earn a 401 per session, later and
        less clearly than a line at start-up (``server.app.check_settings`` logs it)."""
        key = self.elevenlabs_api_key.get_secret_value() if self.elevenlabs_api_key else None
        if key is not None and (not key.strip() or looks_like_placeholder(key)):
            self.elevenlabs_api_key = None
            self._ignored_elevenlabs_placeholder = True
        return self

    @property
    def ignored_elevenlabs_placeholder(self) -> bool:
        """Whether ``ELEVENLABS_API_KEY`` held a placeholder and was treated as unset."""
        return self._ignored_elevenlabs_placeholder

    def secrets(self) -> list[str]:
        """Every secret this server holds, for redaction."""
        held = [*self.api_keys, self.elevenlabs_api_key, self.redis_url]  # a Redis URL may hold a password
        return [secret.get_secret_value() for secret in held if secret is not None]


def _explain_field(field: str, problem: str) -> str:
    info = Settings.model_fields.get(field)
    form = _expected_form(info.annotation) if info is not None else "see .env.example"
    return f"{env_name(field)}: {problem}; expected {form} (see .env.example)"


def _explain(exc: ValidationError) -> str:
    """The first error of ``exc`` as one line, without the value (it may be a secret)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(_explain_field(field, message[:1].lower() + message[1:]))
    return "; ".join(dict.fromkeys(lines))
