"""Running the server in production: Prometheus metrics, JSON logs with session ids, memory
watching, and the uvicorn runner (binding checks, SIGTERM drain). Knows nothing of the protocols
or the engines."""
