"""WAV files with the standard library, and other files (FLAC, MP3, Ogg) through PyAV."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt


def write_wav(target: str | Path | BinaryIO, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Write mono 16-bit PCM as a WAV file."""
    with wave.open(target if not isinstance(target, Path) else str(target), "wb") as w:  # type: ignore[arg-type]
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """Read a PCM WAV (8/16/32-bit, any channels) as mono int16."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"unsupported WAV sample width {width}")
    if channels > 1:
        data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return np.clip(data, -32768, 32767).astype(np.int16), rate


def read_audio_file(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """Any audio file as mono int16: WAV directly, everything else decoded with PyAV."""
    if str(path).lower().endswith(".wav"):
        try:
            return read_wav(path)
        except (wave.Error, ValueError):
            pass
    from speechwire.audio.codecs import decode_with_av

    return decode_with_av(Path(path).read_bytes())
