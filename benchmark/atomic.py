"""Atomic file writes: write to a temp file beside the target, then rename over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 (whatever the locale: the reports declare UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work starts, an output folder that cannot be made: the path exists and is not a
    folder, or its nearest existing ancestor is not a writable folder (``/dev/null/x``, a read-only mount)."""
    from benchmark import UnlearnbenchError

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UnlearnbenchError(f"{flag} {path} exists and is not a directory")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UnlearnbenchError(f"{flag} {path}: cannot make it, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnlearnbenchError(f"{flag} {path}: cannot make it, {parent} is not writable")
    return path
