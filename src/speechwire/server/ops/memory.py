"""Keep the server's resident memory near what it really uses (glibc only; a no-op elsewhere).

Why: engine threads (onnxruntime, CTranslate2, PyAV) each get a glibc malloc arena, and freed
memory stays in those arenas, so RSS creeps up to the high-water mark of every thread and stays
there. Two arenas are plenty for a server whose hot loops run in native code, and a periodic
``malloc_trim`` hands freed pages back to the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging

log = logging.getLogger("speechwire.memory")

M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc malloc arenas (call before the engines start their threads)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Return freed heap pages to the system now."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


async def trim_periodically(interval_s: float = 30.0) -> None:
    """Trim every ``interval_s`` (a few milliseconds each, off the event loop)."""
    if _libc() is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(trim)
