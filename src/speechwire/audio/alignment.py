"""Character timing of a stretch of audio.

It lives in the audio layer because engines produce it and the protocol layer serialises it; both
may import from here without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CharAlignment:
    """When each character of a text is spoken, in milliseconds relative to its own audio chunk.

    ``chars`` concatenate to exactly the text that was synthesised (whitespace included), so a
    client can count which input characters have been voiced.
    """

    chars: tuple[str, ...]
    start_ms: tuple[int, ...]
    duration_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.chars) == len(self.start_ms) == len(self.duration_ms)):
            raise ValueError("chars, start_ms and duration_ms must have equal lengths")

    @property
    def text(self) -> str:
        return "".join(self.chars)

    @property
    def end_ms(self) -> int:
        """End of the last character (0 for an empty alignment)."""
        if not self.chars:
            return 0
        return self.start_ms[-1] + self.duration_ms[-1]

    def shifted(self, offset_ms: int) -> CharAlignment:
        """The same alignment moved later by ``offset_ms`` (used when audio is prepended)."""
        return CharAlignment(self.chars, tuple(s + offset_ms for s in self.start_ms), self.duration_ms)

    @staticmethod
    def empty() -> CharAlignment:
        return CharAlignment((), (), ())
