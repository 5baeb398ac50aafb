"""Whether a lost connection is worth a new one: one pure function of (close code, error type);
and how long to wait before the next attempt.

The tables and the backoff constants are data, shared with the browser (``web/wire.js`` holds the
same JSON, and ``tests/test_wire_constants.py`` keeps them equal). An error type the table names
decides; otherwise the close code does; a code the table does not name is retried (a network
fault). Each row's reason stands beside it.
"""

from __future__ import annotations

import enum

RETRY_ERRORS: dict[str, bool] = {
    "internal_error": True,  # a fault of the server, not of the request; the next session may work
    "transcriber_error": True,  # the recogniser failed on the server; the request was fine
    "upstream_error": True,  # the cloud behind a relay failed; the request was fine
    "resource_exhausted": True,  # the server is at its session limit; the backoff waits for a slot
    "rate_limited": True,  # the key's budget refills; the backoff waits for it
    "service_unavailable": True,  # a relay could not reach the cloud; it may be back soon
    "queue_overflow": True,  # the reader fell behind; a new session resumes from what was voiced
    "session_time_limit_exceeded": True,  # sessions are capped in length, not number: the next resumes
    "input_timeout_exceeded": False,  # the client went quiet; a new session would idle out the same way
}
"""Error type → retry? (errors our server sends). Any other error, sent on 1008
(``invalid_api_key``, ``voice_not_found``, ``input_error``…), fails through its close code:
repeating the request repeats the error."""

RETRY_CLOSE_CODES: dict[int, bool] = {
    1000: True,  # a normal close before the stream's end (a server restarting cleanly)
    1001: True,  # the server is going away (SIGTERM drain); another replica or the restart serves
    1006: True,  # no close frame: a cut connection, the fault reconnection exists for
    1011: True,  # 1011-1013: server error, restart, try again later; none is the request's fault
    1012: True,
    1013: True,
    1003: False,  # 1003, 1007-1009: a protocol or policy violation; the same frames would fail again
    1007: False,
    1008: False,
    1009: False,
}
"""Close code → retry? (when no error type decides); codes not named are retried."""


BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 8.0
BACKOFF_FACTOR = 2.0
"""Reconnection backoff: the ceiling doubles from 0.2 s to 8 s, and each delay is uniform in
[0, ceiling] ("full jitter"): clients cut by one fault spread out instead of returning together."""


def backoff_ceiling(
    attempt: int, initial: float = BACKOFF_INITIAL_S, maximum: float = BACKOFF_MAX_S
) -> float:
    """The largest delay before retry ``attempt`` (0 for the first): ``BACKOFF_FACTOR`` times
    larger each attempt, capped at ``maximum``."""
    ceiling = initial
    for _ in range(attempt):
        ceiling = min(maximum, ceiling * BACKOFF_FACTOR)
    return ceiling


class Decision(enum.Enum):
    RETRY = "retry"
    FAIL = "fail"


def decide(close_code: int | None, error: str | None = None) -> Decision:
    """Retry or fail after a connection ended with ``close_code`` (None: no close frame) and the
    last error type the server sent on it (None: none)."""
    if error is not None and error in RETRY_ERRORS:
        return Decision.RETRY if RETRY_ERRORS[error] else Decision.FAIL
    retry = RETRY_CLOSE_CODES.get(close_code if close_code is not None else 1006, True)
    return Decision.RETRY if retry else Decision.FAIL
