"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file, and a failed write leaves the old file
(if any) untouched and no temporary file behind.  The file gets the permissions
``open(path, "w")`` would give it: those of the file it replaces, else
``0o666 & ~umask`` (not the 0600 of a private temporary file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from refquant.errors import InvalidArgumentError


@contextlib.contextmanager
def atomic_path(path, *, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The caller writes the whole file to the yielded path (by any library).  On
    leaving the block without an exception the file is renamed onto ``path``
    with :func:`os.replace`; on an exception it is removed and the exception
    propagates.
    """
    target = Path(path)
    if target.is_dir():
        raise InvalidArgumentError(
            f"path must name a file, not a folder; got path={str(target)!r}"
        )
    if not (target.parent if str(target.parent) else Path(".")).is_dir():
        raise InvalidArgumentError(
            f"path must be in an existing folder; got path={str(target)!r}"
        )
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix, dir=target.parent or "."
    )
    os.close(fd)
    try:
        os.chmod(tmp, _new_file_mode(target))
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _new_file_mode(target: Path) -> int:
    """Permission bits for ``target``: kept if it exists, else 0666 & ~umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no portable read-only query elsewhere
    os.umask(mask)
    return mask


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
