"""``--help`` shows defaults, lists every command, and says which key variable is whose (issue 15,
item 9); the VAD silence choice is explained where it is chosen (item 5)."""

from __future__ import annotations

import argparse
import re

import pytest

from speechwire.cli import build_parser


def help_of(*path: str) -> str:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return " ".join(parser.format_help().split())


def test_top_level_lists_every_command_and_both_key_variables() -> None:
    text = help_of()
    for command in ("serve", "say", "transcribe", "bench"):
        assert command in text
    assert "SPEECHWIRE_API_KEYS" in text and re.search(r"SPEECHWIRE_API_KEY(?!S)", text)


def test_defaults_are_shown() -> None:
    assert "(default: 8000)" in help_of("serve")
    assert "(default: joe)" in help_of("say")
    transcribe = help_of("transcribe")
    assert "(default: 0.5)" in transcribe and "1.5 s" in transcribe
    assert "(default: pcm_22050)" in help_of("bench", "tts")


def test_key_variables_named_in_both_helps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHWIRE_API_KEY", "sk-secret-never-shown")
    assert "SPEECHWIRE_API_KEYS" in help_of("serve")
    for command in ("say", "transcribe"):
        text = help_of(command)
        assert "SPEECHWIRE_API_KEY" in text and "SPEECHWIRE_API_KEYS" in text
        assert "sk-secret-never-shown" not in text
