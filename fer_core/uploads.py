"""Storing data sets uploaded through the app under ``data/datasets``, safely."""

from __future__ import annotations

import io
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path

from . import files
from .config import datasets_dir
from .errors import DataError

#: An archive may not expand to more than this (zip bombs).
MAX_EXTRACTED_BYTES = 2 * 1024**3
MAX_MEMBERS = 200_000


def safe_name(name: str) -> str:
    """Reduce an uploaded file name to a safe base name (no folders, no odd characters)."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return base[:100]


def save_upload(name: str, content: bytes) -> Path:
    """Keep an uploaded CSV (plain or gzipped) or zip under ``data/datasets``.

    A zip is extracted into a folder of the same name; an existing upload of the same
    name is replaced.

    Returns:
        The path of the stored CSV file or extracted folder.

    Raises:
        DataError: the file is empty, of the wrong type, or an unsafe or broken zip.
    """
    if not content:
        raise DataError(f"{name}: the uploaded file is empty.")
    base = safe_name(name)
    lower = base.lower()
    target_dir = datasets_dir() / "uploads"
    target_dir.mkdir(parents=True, exist_ok=True)
    if lower.endswith((".csv", ".csv.gz", ".gz")):
        try:
            return files.atomic_write(target_dir / base, lambda tmp: tmp.write_bytes(content))
        except OSError as exc:
            raise DataError(f"{name}: cannot be stored under {target_dir} ({exc.strerror or exc}); "
                            "free some disk space or check the folder's permissions.") from None
    if lower.endswith(".zip"):
        return extract_zip(content, target_dir / base[:-4], name)
    raise DataError(f"{name}: upload a FER2013 CSV (.csv or .csv.gz) or a zip of image folders.")


def archive_problem(exc: BaseException) -> str | None:
    """What an exception raised while reading a zip means for the user (None: not an archive problem)."""
    if isinstance(exc, DataError):
        return str(exc).split(": ", 1)[-1]
    text = str(exc)
    if isinstance(exc, RuntimeError) and "encrypted" in text:
        return "the zip is encrypted (password-protected); upload an unencrypted zip."
    if isinstance(exc, NotImplementedError):
        return (f"the zip uses a compression method that cannot be read here ({text}: e.g. Deflate64 or AES); "
                "make it again with ordinary compression (e.g. 'zip -r data.zip folder').")
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError, ValueError)):
        return f"the zip is damaged ({type(exc).__name__}: {text[:200]}); download or make it again."
    if isinstance(exc, OSError):
        return f"cannot extract the zip ({exc.strerror or text}); free some disk space or check the folder."
    return None


def extract_zip(content: bytes, dest: Path, name: str = "archive") -> Path:
    """Extract a zip into ``dest``, refusing path traversal, links and zip bombs."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{name}: not a valid zip file ({exc}).") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DataError(f"{name}: {len(members)} entries is more than the limit of {MAX_MEMBERS}.")
        if sum(m.file_size for m in members) > MAX_EXTRACTED_BYTES:
            raise DataError(f"{name}: it would expand to more than {MAX_EXTRACTED_BYTES // 1024**3} GB.")
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        root = tmp.resolve()
        try:
            for m in members:
                mode = m.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DataError(f"{name}: entry {m.filename!r} is a symbolic link; links are not allowed.")
                out = (tmp / m.filename).resolve()
                if root != out and root not in out.parents:
                    raise DataError(f"{name}: entry {m.filename!r} points outside the archive's folder.")
                if m.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    written = 0
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > m.file_size:  # the header lied about the size
                            raise DataError(f"{name}: entry {m.filename!r} is larger than its header says.")
                        dst.write(chunk)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing half-extracted is left, whatever went wrong
            problem = archive_problem(exc)
            if problem is None:
                raise
            raise DataError(f"{name}: {problem}") from None
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
