"""Atomic file writes and the ``.npz`` cache format: the one place that writes a file safely
(and the one check of a user's file before it is read, :func:`check_readable`).

Every file FER Studio writes that another process may read at the same time (run
directories, caches, settings, the shipped model) is written to a temporary file in the same
folder and then renamed over the target: a reader sees the old file or the new one, never half
of one, and a crash or a full disk leaves the old file intact and no temporary file behind.
"""

from __future__ import annotations

import json
import zipfile
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fer_core.errors import DataError

TMP_MARK = ".tmp-"  # part of every temporary file's name, so leftovers can be recognised


_TEMP_NAME = re.compile(re.escape(TMP_MARK) + r"\d+-[0-9a-f]{8}")


def is_temp_name(name: str) -> bool:
    """True for a name :func:`temp_path` made (a leftover of an interrupted write), and only those."""
    return bool(_TEMP_NAME.search(name))


def remove_files(folder: Path, ours: Callable[[str], bool]) -> list[str]:
    """Remove the files under ``folder`` whose path relative to it (``a/b.txt``) ``ours`` accepts,
    then the folders left empty, ``folder`` included; return the paths kept (never followed into
    a symbolic link)."""
    kept = []
    for p in sorted(folder.rglob("*"), key=lambda q: -len(q.parts)):  # deepest first
        rel = p.relative_to(folder).as_posix()
        if p.is_dir() and not p.is_symlink():
            if not any(p.iterdir()):
                p.rmdir()
        elif ours(rel):
            p.unlink(missing_ok=True)
        else:
            kept.append(rel)
    if not any(folder.iterdir()):
        folder.rmdir()
    return sorted(kept)


def temp_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` that keeps its suffix (Keras and NumPy want theirs)."""
    path = Path(path)
    return path.with_name(f"{path.stem}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to write a temporary file, then rename it to ``path`` in one step.

    The temporary file is removed whatever goes wrong (a full disk, a bad value, Ctrl-C), and
    the exception goes on to the caller. Returns ``path``.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2))


def read_json(path: str | os.PathLike, default=None):
    """The JSON value in ``path``, or ``default`` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def check_readable(path: str | os.PathLike, label: str) -> None:
    """Refuse, by ``label``, a path that is missing, not a regular file (a folder, a device), not
    readable or empty (:class:`~fer_core.errors.DataError`): before a decoder says it less clearly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{label}: no such file." if not path.exists() else
                        f"{label}: not a regular file (a folder or a device).")
    if not os.access(path, os.R_OK):
        raise DataError(f"{label}: permission denied; check that you may read it.")
    if path.stat().st_size == 0:
        raise DataError(f"{label}: the file is empty.")


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write arrays and a JSON-able ``meta`` dict as one ``.npz`` file, atomically (no pickles)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays, meta=np.array(json.dumps(meta))))


def load_npz(path: str | os.PathLike, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict] | None:
    """Read what :func:`save_npz` wrote: ``(arrays, meta)``, or None when missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {n: z[n] for n in names}, json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache entry is simply rebuilt
