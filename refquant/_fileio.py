"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file, and a failed write leaves the old file
(if any) untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, *, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The caller writes the whole file to the yielded path (by any library).  On
    leaving the block without an exception the file is renamed onto ``path``
    with :func:`os.replace`; on an exception it is removed and the exception
    propagates.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix, dir=target.parent or "."
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, chunks) -> None:
    """Write an iterable of bytes-like chunks to ``path`` atomically (fsynced)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (fsynced)."""
    write_bytes_atomic(path, [text.encode("utf-8")])
