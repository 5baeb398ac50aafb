"""Errors as the wire protocols carry them. The protocol layer raises; the server serialises."""

from __future__ import annotations

import enum
from typing import Any

POLICY_VIOLATION = 1008
"""Close code ElevenLabs uses for every TTS protocol error (the error frame says which)."""

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


class TTSError(enum.StrEnum):
    """The ``error`` codes of the TTS sockets, one name per code (a ``str``, so frames and
    comparisons with plain strings work unchanged)."""

    INVALID_INPUT = "invalid_input_message"
    INPUT_TIMEOUT = "input_timeout_exceeded"
    MESSAGE_TOO_LARGE = "message_too_large"  # a frame, or a buffer that is never cut
    QUEUE_OVERFLOW = "queue_overflow"  # text waiting for synthesis past its bound
    INVALID_REQUEST = "invalid_request"
    VOICE_NOT_FOUND = "voice_not_found"
    MODEL_NOT_FOUND = "model_not_found"
    UNSUPPORTED_OUTPUT_FORMAT = "unsupported_output_format"
    TOO_MANY_CONTEXTS = "max_active_conversations"  # upstream closes the socket on it
    INTERNAL = "internal_error"


def query_bool(name: str, value: str, error: str = TTSError.INVALID_REQUEST) -> bool:
    """A boolean query parameter, read the same way on every route: ``true``/``1``/``yes`` and
    ``false``/``0``/``no``, any case, surrounding blanks ignored (clients build these by hand)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ProtocolError(error, f"query parameter {name!r} must be true or false, got {value!r}")


class ProtocolError(Exception):
    """A violation the peer must be told about before the socket closes.

    ``error`` is ElevenLabs' machine-readable code (``invalid_input_message``,
    ``input_timeout_exceeded``…), ``message`` the human text, ``code`` the WebSocket close code.
    """

    def __init__(self, error: str, message: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.code = code

    def tts_frame(self) -> dict[str, Any]:
        """The TTS error frame: ``{"message", "error", "code"}`` (observed from ElevenLabs)."""
        return {"message": self.message, "error": self.error, "code": self.code}

    def __repr__(self) -> str:
        return f"ProtocolError({self.error!r}, {self.message!r}, {self.code})"
