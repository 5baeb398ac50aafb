"""WebSocket plumbing shared by every realtime route: the socket as a session sees it (sends with
a deadline, one close), the one driver that runs a sans-I/O session on it (frames, deadlines,
error frames), and what happens around every session (authorisation, admission, the session time
limit, local or relayed). Knows nothing of TTS or STT: routes give it a session and a handler."""
