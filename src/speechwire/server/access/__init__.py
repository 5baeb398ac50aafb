"""Who may use the server and how much: API keys and single-use tokens, rate and concurrency
limits, the Redis store that shares them across processes, and redaction of secrets in logs.
Knows nothing of routes, sessions or engines."""
