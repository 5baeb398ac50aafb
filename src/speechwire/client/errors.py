"""Typed client exceptions, named after the protocol's error codes."""

from __future__ import annotations


class SpeechwireError(Exception):
    """Base of every error the client raises."""


class ServerError(SpeechwireError):
    """The server sent an error frame: ``error`` is its machine-readable code."""

    def __init__(self, error: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message
        self.code = code


class InvalidInputMessage(ServerError):
    pass


class InputTimeoutExceeded(ServerError):
    pass


class VoiceNotFound(ServerError):
    pass


class ModelNotFound(ServerError):
    pass


class MessageTooLarge(ServerError):
    pass


class UnsupportedOutputFormat(ServerError):
    pass


class MaxActiveConversations(ServerError):
    """A 6th context on a multi-context socket."""


class QueueOverflow(ServerError):
    pass


class ResourceExhausted(ServerError):
    """The server is at its session limit: retry later (resumable clients do)."""


class InputError(ServerError):
    """STT: a malformed audio message (bad base64, odd byte count, wrong sample rate…)."""


class ChunkSizeExceeded(ServerError):
    pass


class InvalidRequest(ServerError):
    """STT: a query parameter, model or language the server does not accept."""


class TranscriberError(ServerError):
    pass


class ConnectionClosedError(SpeechwireError):
    """The socket closed before the stream ended."""


_BY_CODE: dict[str, type[ServerError]] = {
    "invalid_input_message": InvalidInputMessage,
    "input_timeout_exceeded": InputTimeoutExceeded,
    "voice_not_found": VoiceNotFound,
    "model_not_found": ModelNotFound,
    "message_too_large": MessageTooLarge,
    "unsupported_output_format": UnsupportedOutputFormat,
    "max_active_conversations": MaxActiveConversations,
    "queue_overflow": QueueOverflow,
    "resource_exhausted": ResourceExhausted,
    "input_error": InputError,
    "chunk_size_exceeded": ChunkSizeExceeded,
    "invalid_request": InvalidRequest,
    "transcriber_error": TranscriberError,
}


def server_error(error: str, message: str, code: int | None = None) -> ServerError:
    """The most specific exception class for an error code."""
    return _BY_CODE.get(error, ServerError)(error, message, code)
