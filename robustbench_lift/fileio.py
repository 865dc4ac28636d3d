"""Crash-safe file writes shared by the run store, checkpoints and the ``corrupt`` writer.

A file is written under a temporary name beside its destination, flushed to disk, then renamed over it, so a reader
(or a process killed at any moment) sees the old file or the new one, never a mix. Results are meant to be shared, so
files end up readable like any other written file (0644; directories 0755) - ``tempfile`` alone would leave them
private (0600 / 0700).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TMP_PREFIX", "atomic_path", "atomic_dir", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]

#: Prefix of every temporary file, so that leftovers of a killed process can be recognised and removed.
TMP_PREFIX = ".tmp-"

_FILE_MODE = 0o644
_DIR_MODE = 0o755


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename) to disk, where the file system allows it."""
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` atomically.

    The block writes the temporary file by any means (``np.save``, ``safetensors.save_file``, a memmap...). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory tree: built in a temporary directory, then renamed into place.

    An existing ``path`` is replaced only once the new tree is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    try:
        yield tmp
        for root, dirs, _ in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), _DIR_MODE)
        os.chmod(tmp, _DIR_MODE)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); e.g. ``df.to_csv()``'s string, HTML."""
    atomic_write_bytes(path, text.encode(encoding))
