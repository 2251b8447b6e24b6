"""Storing data sets uploaded through the app under ``data/datasets``, safely."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from fer_core import files
from fer_core.config import check_writable, datasets_dir
from fer_core.errors import DataError

#: An archive may not expand to more than this (zip bombs), counting each entry as at least one
#: file-system block (100,000 one-byte files take 394 MB on disk, not 100 kB).
MAX_EXTRACTED_BYTES = 2 * 1024**3
BLOCK = 4096
#: Entries an archive may hold: FER2013 as image folders is 35,887 files (and a few folders).
MAX_MEMBERS = 50_000


def safe_name(name: str) -> str:
    """Reduce an uploaded file name to a safe base name (no folders, no odd characters)."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return base[:100]


def save_upload(name: str, content: bytes) -> Path:
    """Keep an uploaded CSV (plain or gzipped) or zip under ``data/datasets/uploads``.

    A zip is extracted into a folder. The stored name is the safe name with the first 8 hex
    digits of the content's SHA-256 (``fer2013-1a2b3c4d.csv``): the same file uploaded again is
    the same upload (nothing is written twice), and two different files of the same name are
    both kept, never one replacing the other.

    Returns:
        The path of the stored CSV file or extracted folder.

    Raises:
        DataError: the file is empty, of the wrong type, or an unsafe or broken zip.
    """
    return store_upload(name, content)[0]


def store_upload(name: str, content: bytes) -> tuple[Path, bool]:
    """:func:`save_upload`, and whether this call wrote it (False: the same file was there)."""
    check_writable("Uploading a data set")
    if not content:
        raise DataError(f"{name}: the uploaded file is empty.")
    base = safe_name(name)
    lower = base.lower()
    digest = hashlib.sha256(content).hexdigest()[:8]
    target_dir = uploads_dir()
    if lower.endswith((".csv", ".csv.gz", ".gz")):
        suffix = ".csv.gz" if lower.endswith(".csv.gz") else Path(base).suffix
        target = target_dir / f"{base[:-len(suffix)] or 'upload'}-{digest}{suffix}"
        if target.is_file():
            return target, False
        try:
            return files.atomic_write(target, lambda tmp: tmp.write_bytes(content)), True
        except OSError as exc:
            raise DataError(f"{name}: cannot be stored under {target_dir} ({exc.strerror or exc}); "
                            "free some disk space or check the folder's permissions.") from None
    if lower.endswith(".zip"):
        dest = target_dir / f"{base[:-4] or 'upload'}-{digest}"
        return (dest, False) if dest.is_dir() else (extract_zip(content, dest, name), True)
    raise DataError(f"{name}: upload a FER2013 CSV (.csv or .csv.gz) or a zip of image folders.")


def uploads_dir() -> Path:
    """``data/datasets/uploads``: where uploaded data sets are stored (created on first use)."""
    path = datasets_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def add_upload(name: str, content: bytes, check: Callable[[Path], object]) -> Path:
    """Store an upload (:func:`save_upload`), then ``check(path)`` it (e.g. load it as a data
    set); an upload that fails its check is removed whole, so a refused upload leaves nothing.

    Raises:
        DataError (or whatever ``check`` raises): the upload was refused; nothing of it is kept.
    """
    path, created = store_upload(name, content)
    try:
        check(path)
    except Exception:  # not BaseException: a page's rerun stops the check without refusing the upload
        if created:  # the same file uploaded earlier (another session's, in use) is never removed here
            discard_upload(path)
        raise
    return path


def discard_upload(path: Path) -> None:
    """Remove one stored upload (a file or an extracted folder directly under the uploads folder);
    anything else is left alone."""
    path = Path(path)
    if path.parent.resolve() != uploads_dir().resolve() or path.is_symlink():
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    """Extract a zip into ``dest`` (a new folder), refusing path traversal, links and zip bombs;
    entry count, size and free space are checked before anything is written."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{name}: not a valid zip file ({exc}).") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DataError(f"{name}: {len(members):,} entries is more than the limit of {MAX_MEMBERS:,} (FER2013 "
                            "has 35,887 images); upload only the data set's image folders. Nothing was extracted.")
        need = sum(max(m.file_size, BLOCK) for m in members)
        if need > MAX_EXTRACTED_BYTES:
            raise DataError(f"{name}: it would expand to more than {MAX_EXTRACTED_BYTES // 1024**3} GB. "
                            "Nothing was extracted.")
        free = shutil.disk_usage(dest.parent).free
        if need > free:
            raise DataError(f"{name}: it needs {need / 1e6:,.0f} MB and only {free / 1e6:,.0f} MB are free under "
                            f"{dest.parent}; free some disk space. Nothing was extracted.")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))  # its own, per extraction
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
    try:
        tmp.rename(dest)
    except OSError:  # the same archive, extracted meanwhile by another session: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise
    return dest
