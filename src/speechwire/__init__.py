"""speechwire: real-time speech over WebSockets, ElevenLabs-protocol compatible, on local engines."""

__version__ = "0.1.0"
