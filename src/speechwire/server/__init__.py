"""The server: the ASGI app (``app``), the state every request sees (``state``), the relay to the
ElevenLabs cloud (``relay``), the synthesis pipeline that turns engine output into the requested
format (``speech``), and by concern: ``ws/`` (WebSocket plumbing: socket, driver, admission),
``routes/`` (what each endpoint does), ``access/`` (keys, tokens, limits), ``ops/`` (metrics,
logs, memory, runner).

Imports audio, protocol and engines; knows nothing of the client or the CLI.
"""
