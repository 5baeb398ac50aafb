"""The ElevenLabs wire protocols, once: typed messages with upstream's field names, parsing that
fails only with ``ProtocolError(code, message)``, and sans-I/O session state machines for both
ends (``stream-input``, ``multi-stream-input``, Scribe realtime), driven by frames and a ``now``
argument.

Imports only ``audio``. Knows nothing of asyncio, sockets, engines or the server and client
that drive it, so tests run a server session against a client session in memory.
"""
