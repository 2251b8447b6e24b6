"""Storing data sets uploaded through the app under ``data/datasets``, safely."""

from __future__ import annotations

import io
import re
import shutil
import stat
import zipfile
from pathlib import Path

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
        path = target_dir / base
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(content)
        tmp.replace(path)
        return path
    if lower.endswith(".zip"):
        return extract_zip(content, target_dir / base[:-4], name)
    raise DataError(f"{name}: upload a FER2013 CSV (.csv or .csv.gz) or a zip of image folders.")


def extract_zip(content: bytes, dest: Path, name: str = "archive") -> Path:
    """Extract a zip into ``dest``, refusing path traversal, links and zip bombs."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise DataError(f"{name}: not a valid zip file.") from None
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
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"{name}: cannot extract the zip ({exc}).") from None
        except DataError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
