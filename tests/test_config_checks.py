"""Start-up refuses keys anyone could know (issue 15, item 2).

``cp .env.example .env`` must never leave a published key in force: the placeholder (and any key
that says "replace", or is short) stops ``speechwire serve`` with a message saying what to put
there; ``ELEVENLABS_API_KEY``'s placeholder counts as unset, with a log line. The start-up cases
run the real ``speechwire serve`` in a folder holding that ``.env``, as a user would.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from speechwire.config import EXAMPLE_API_KEY, Settings
from speechwire.server.app import InsecureConfiguration, check_settings
from speechwire.testing.serverprocess import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
REAL_KEY = "sw_" + secrets.token_urlsafe(32)


def settings(**values: object) -> Settings:
    """Settings from ``values`` only: no ``.env`` of the working folder, no environment."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def example_with_keys_uncommented() -> str:
    """``.env.example`` as a user who uncommented the key line without replacing it has it."""
    text = EXAMPLE.read_text()
    line = f'# SPEECHWIRE_API_KEYS=["{EXAMPLE_API_KEY}"]'
    assert line in text  # the example still shows the placeholder, commented out
    return text.replace(line, line[2:])


def clean_env() -> dict[str, str]:
    """The caller's environment without any speechwire or ElevenLabs setting (only ``.env``
    speaks), and light engines so a server that does start is up in a second or two."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHWIRE_", "ELEVENLABS_"))}
    return {**env, "SPEECHWIRE_TTS_ENGINES": '["espeak"]', "SPEECHWIRE_STT_ENGINES": '["moonshine"]'}


def serve(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "speechwire.cli", "serve", *args],
        cwd=folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def refused_at_start(folder: Path, *args: str) -> str:
    """``speechwire serve`` in ``folder``, which must stop at once with exit code 2: its output."""
    proc = serve(folder, "--port", str(free_port()), *args)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 2, output
    return output


@contextmanager
def running(folder: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``speechwire serve`` in ``folder`` until it answers ``/healthz``; stopped (SIGTERM) after."""
    port = free_port()
    proc = serve(folder, "--port", str(port), *args)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("args", [("--dev",), ("--host", "0.0.0.0")], ids=["make-run", "all-interfaces"])
def test_start_up_refuses_the_example_placeholder_with_what_to_put_there(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / ".env").write_text(example_with_keys_uncommented())
    output = refused_at_start(tmp_path, *args)
    assert "placeholder" in output and EXAMPLE_API_KEY in output
    assert "secrets.token_urlsafe(32)" in output  # what to put there
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (EXAMPLE_API_KEY, "placeholder"),
        ("sw_please-replace-me-with-something-long", "placeholder"),
        ("your-api-key-goes-here-0000000000", "placeholder"),
        ("sw_short", "8 characters"),
    ],
)
def test_placeholder_and_short_keys_are_refused(key: str, said: str) -> None:
    with pytest.raises(InsecureConfiguration) as refused:
        check_settings(settings(api_keys=[SecretStr(REAL_KEY), SecretStr(key)], dev=True))
    message = str(refused.value)
    assert said in message and "secrets.token_urlsafe(32)" in message
    if key != EXAMPLE_API_KEY:
        assert key not in message  # a refused key may still be someone's secret: never echoed


def test_a_real_key_passes_the_checks() -> None:
    check_settings(settings(api_keys=[SecretStr(REAL_KEY)]))


def test_the_elevenlabs_placeholder_counts_as_unset_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    configured = settings(dev=True, elevenlabs_api_key="your-elevenlabs-api-key-here")
    assert configured.elevenlabs_api_key is None
    assert "your-elevenlabs-api-key-here" not in configured.secrets()
    with caplog.at_level(logging.WARNING, logger="speechwire.server"):
        check_settings(configured)
    assert "ELEVENLABS_API_KEY is a placeholder" in caplog.text
    # A backend that needs the key says that it holds a placeholder, not that it is missing.
    with pytest.raises(InsecureConfiguration, match="placeholder"):
        check_settings(
            settings(dev=True, elevenlabs_api_key="your-elevenlabs-api-key-here", tts_backend="elevenlabs")
        )
    real = settings(dev=True, elevenlabs_api_key="sk_" + secrets.token_hex(24))
    assert real.elevenlabs_api_key is not None and not real.ignored_elevenlabs_placeholder


def test_the_example_copied_as_it_is_runs_a_dev_server_and_logs_the_placeholder(tmp_path: Path) -> None:
    """``cp .env.example .env`` then ``make run``: a development server, no key demanded, and
    one line saying the ElevenLabs placeholder is ignored."""
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    with running(tmp_path, "--dev") as (url, proc):
        assert httpx.get(f"{url}/v1/voices", timeout=10).status_code == 200  # no key needed
        assert httpx.post(f"{url}/v1/single-use-token/tts_websocket", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert "ELEVENLABS_API_KEY is a placeholder" in output


@pytest.mark.parametrize("form", ["json", "plain"])
def test_a_real_key_in_env_starts_and_is_demanded(tmp_path: Path, form: str) -> None:
    """``SPEECHWIRE_API_KEYS=["k"]`` as the example shows, or ``SPEECHWIRE_API_KEYS=k`` as people
    type it (issue 14: the plain form crashed start-up with a pydantic traceback)."""
    text = example_with_keys_uncommented().replace(EXAMPLE_API_KEY, REAL_KEY)
    if form == "plain":
        text = text.replace(f'SPEECHWIRE_API_KEYS=["{REAL_KEY}"]', f"SPEECHWIRE_API_KEYS={REAL_KEY}")
        assert f"SPEECHWIRE_API_KEYS={REAL_KEY}\n" in text
    (tmp_path / ".env").write_text(text)
    with running(tmp_path, "--dev") as (url, _):
        assert httpx.get(f"{url}/v1/voices", timeout=10).status_code == 401
        assert httpx.get(f"{url}/v1/voices", headers={"xi-api-key": REAL_KEY}, timeout=10).status_code == 200


# --- issue 14: settings people type, and one line for each bad one ---------------------------------


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("sw_one_0000000000000000000000", ["sw_one_0000000000000000000000"]),
        (" sw_a_000000000000000000000000 , sw_b_000000000000000000000000 ", None),
        ('["sw_a_000000000000000000000000", "sw_b_000000000000000000000000"]', None),
    ],
    ids=["plain", "comma-separated", "json"],
)
def test_api_keys_plain_comma_separated_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, keys: list[str] | None
) -> None:
    monkeypatch.setenv("SPEECHWIRE_API_KEYS", value)
    expected = keys or ["sw_a_000000000000000000000000", "sw_b_000000000000000000000000"]
    assert [k.get_secret_value() for k in Settings(_env_file=None).api_keys] == expected  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SPEECHWIRE_MAX_SESSIONS", "lots", "a whole number"),
        ("SPEECHWIRE_DEV", "maybe", "true or false"),
        ("SPEECHWIRE_SEND_TIMEOUT_S", "ten", "a number"),
        ("SPEECHWIRE_TTS_BACKEND", "cloud", "one of local, elevenlabs"),
        ("SPEECHWIRE_TTS_VOICE_ALIASES", "{joe", "a JSON object"),
        ("SPEECHWIRE_API_KEYS", '["sw_secret_part_000000000000", ', "comma-separated list"),
        ("SPEECHWIRE_ALLOWED_HOSTS", "[1, 2", "comma-separated list"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_the_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as bad:
        Settings(_env_file=None)  # type: ignore[call-arg]
    message = str(bad.value)
    assert "\n" not in message and message.startswith(variable), message
    assert said in message and ".env.example" in message
    assert "sw_secret_part" not in message  # the value may be a key: never echoed


def test_a_bad_setting_stops_serve_with_one_line(tmp_path: Path) -> None:
    """No traceback, one line that names the variable and the form, exit code 2."""
    (tmp_path / ".env").write_text(f"SPEECHWIRE_API_KEYS={REAL_KEY}\nSPEECHWIRE_MAX_SESSIONS=lots\n")
    output = refused_at_start(tmp_path)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "SPEECHWIRE_MAX_SESSIONS" in lines[0] and "a whole number" in lines[0], output
    assert "Traceback" not in output and REAL_KEY not in output


@pytest.mark.parametrize("key", ["abc", "sk_short_123"])
def test_a_short_elevenlabs_key_is_refused_at_start(key: str) -> None:
    """Every secret is blanked in the logs by its value; a short one could not be (a 3-character
    key was never blanked), and no ElevenLabs key is short."""
    with pytest.raises(InsecureConfiguration) as refused:
        check_settings(settings(dev=True, elevenlabs_api_key=key))
    message = str(refused.value)
    assert "ELEVENLABS_API_KEY" in message and "at least 16" in message and key not in message


@pytest.mark.parametrize(
    ("tts", "stt", "engines"),
    [
        ("piper,espeak,kokoro", "moonshine", (["piper", "espeak", "kokoro"], ["moonshine"])),
        ('["espeak"]', '["moonshine", "whisper_base"]', (["espeak"], ["moonshine", "whisper_base"])),
        ("espeak", "", (["espeak"], [])),  # a TTS-only deployment
    ],
)
def test_engine_lists_take_the_comma_form_and_json(
    monkeypatch: pytest.MonkeyPatch, tts: str, stt: str, engines: tuple[list[str], list[str]]
) -> None:
    """``SPEECHWIRE_TTS_ENGINES=piper,espeak`` is what people type (and what the docs show for
    Kokoro); it used to fail as unparsable, only the JSON form worked."""
    monkeypatch.setenv("SPEECHWIRE_TTS_ENGINES", tts)
    monkeypatch.setenv("SPEECHWIRE_STT_ENGINES", stt)
    settings = Settings()
    assert (settings.tts_engines, settings.stt_engines) == engines
