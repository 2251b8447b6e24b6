"""Readers for the FER2013 layouts: the Kaggle CSV (plain or gzipped) and image folders.

Each reader returns raw arrays plus a list of problems; ``data.load_dataset`` decides
whether problems are fatal (the default) or skipped and counted (``skip_bad=True``).
"""

from __future__ import annotations

import gzip
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_core.config import CLASS_NAMES, IMAGE_SIZE, SPLITS
from fer_core.data.images import read_face
from fer_core.errors import DataError

NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_CHUNK_ROWS = 1024
_USAGE = {s.lower(): s for s in SPLITS}
#: File-name prefixes of the image-folder layout, e.g. ``PublicTest_123.jpg``.
_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
#: Split folder names seen in the wild; ``test`` holds PublicTest and PrivateTest together.
SPLIT_DIRS = {
    "train": "Training", "training": "Training",
    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest", "publictest": "PublicTest",
    "privatetest": "PrivateTest", "test": None,
}
#: Accepted class folder names (lower case) for each FER2013 class.
CLASS_ALIASES = {
    **{name: name for name in CLASS_NAMES},
    **{str(i): name for i, name in enumerate(CLASS_NAMES)},
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "scared": "fear",
    "happiness": "happy", "joy": "happy", "sadness": "sad", "surprised": "surprise", "calm": "neutral",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
_IGNORED_FILES = {"thumbs.db", "desktop.ini"}


@dataclass
class RawData:
    """What a reader found: valid images with their labels and splits, and the problems."""

    images: np.ndarray
    labels: np.ndarray
    splits: list  # split name per image, or None where the source says nothing
    origins: list[str]
    problems: list[str] = field(default_factory=list)
    groups: list | None = None  # per image: folder group used to fill in missing splits


# --------------------------------------------------------------------------- CSV
def shown(value: str, limit: int = 40) -> str:
    """A field's value as it goes into an error message: quoted, and cut to ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value):,} characters)"


def parse_pixel_rows(rows) -> tuple[np.ndarray, dict[int, str]]:
    """Parse space-separated pixel strings into a (R, 2304) uint8 array, vectorised.

    Much faster than ``str.split`` per row: the strings' bytes are read straight from an
    Arrow buffer and digits become numbers with a few NumPy passes, a chunk of rows at a time.

    Args:
        rows: a list of str/bytes or a pyarrow (binary or string) array.

    Returns:
        The pixel array of the valid rows (in order) and ``{row_index: reason}`` for the others.
    """
    import pyarrow as pa

    arr = rows if isinstance(rows, (pa.Array, pa.ChunkedArray)) else pa.array(rows, pa.binary())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.binary())
    arr = arr.cast(pa.large_binary())
    out, bad = [], {}
    starts = range(0, len(arr), _CHUNK_ROWS)
    # NumPy releases the GIL in its loops, so chunks parse in parallel on threads.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda s: _parse_chunk(arr.slice(s, _CHUNK_ROWS)), starts)
        for start, (pixels, chunk_bad) in zip(starts, results):
            out.append(pixels)
            bad.update({start + i: why for i, why in chunk_bad.items()})
    if not out:
        return np.zeros((0, NUM_PIXELS), np.uint8), bad
    return np.concatenate(out), bad


def _parse_well_formed(buf, digit, is_digit, offsets, nulls) -> np.ndarray | None:
    """Fast path for the usual case: every row is 2304 numbers of 1-3 digits split by one space.

    Returns None when the chunk is not like that, and the general parser takes over.
    """
    n_rows = len(offsets) - 1
    if nulls.any() or n_rows == 0 or len(buf) == 0 or (np.diff(offsets) <= 0).any():  # an empty row
        return None
    if not is_digit[offsets[:-1]].all():
        return None
    first = np.empty_like(is_digit)
    first[0] = True
    np.greater(is_digit[1:], is_digit[:-1], out=first[1:])
    first[offsets[:-1]] = True
    starts = np.flatnonzero(first)
    # Only digits and single spaces: digits + (tokens - rows) spaces fill the buffer. (Counting any
    # non-digit as a separator accepted 'x' or '.' here while the general parser refuses them.)
    separators = len(starts) - n_rows
    if (np.count_nonzero(is_digit) + separators != len(buf) or np.count_nonzero(buf == 32) != separators
            or not is_digit[offsets[1:] - 1].all()):
        return None
    row_first = np.searchsorted(starts, offsets)
    if not (np.diff(row_first) == NUM_PIXELS).all():
        return None
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 2
    ends[row_first[1:] - 1] = offsets[1:] - 1
    length = ends - starts
    if length.max() > 2:
        return None
    values = digit[ends].astype(np.int16)
    tens = digit[ends - 1]
    tens[length < 1] = 0
    values += tens * np.int16(10)
    hundreds = digit[ends - 2]
    hundreds[length < 2] = 0
    values += hundreds * np.int16(100)
    if values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(n_rows, NUM_PIXELS)


def _parse_chunk(arr) -> tuple[np.ndarray, dict[int, str]]:
    n_rows = len(arr)
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[arr.offset:arr.offset + n_rows + 1]
    nulls = np.asarray(arr.is_null()) if arr.null_count else np.zeros(n_rows, bool)
    base = int(offsets[0])
    offsets = offsets - base
    buf = np.frombuffer(data_buf, np.uint8)[base:base + int(offsets[-1])] if data_buf is not None else np.zeros(0, np.uint8)

    digit = buf - np.uint8(48)  # wraps around below '0', so one comparison finds digits
    is_digit = digit < 10
    fast = _parse_well_formed(buf, digit, is_digit, offsets, nulls)
    if fast is not None:
        return fast, {}
    row_start = np.zeros(len(buf) + 1, bool)
    row_start[offsets[:-1]] = True  # row boundaries separate tokens like spaces do
    prev = np.empty_like(is_digit)
    prev[:1] = False
    prev[1:] = is_digit[:-1]
    first = is_digit & (~prev | row_start[:-1])
    nxt = np.empty_like(is_digit)
    nxt[-1:] = False
    nxt[:-1] = is_digit[1:]
    last = is_digit & (~nxt | row_start[1:])
    starts = np.flatnonzero(first)
    ends = np.flatnonzero(last)
    tok_len = ends - starts + 1
    values = digit[ends].astype(np.int32)
    # (indices clipped at 0: np.where evaluates both sides, and a 1-byte buffer has no [-2])
    values += np.where(tok_len >= 2, digit[np.maximum(ends - 1, 0)], 0).astype(np.int32) * 10
    values += np.where(tok_len >= 3, digit[np.maximum(ends - 2, 0)], 0).astype(np.int32) * 100
    values[tok_len > 3] = 1000  # four or more digits: out of range, whatever they say

    # Per-row sums as differences of running sums (empty rows are simply zero).
    def per_row(flags: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        running = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
        return running[bounds[1:]] - running[bounds[:-1]]

    counts = per_row(first, offsets)
    invalid_row = per_row(~(is_digit | (buf == 32) | (buf == 9) | (buf == 13)), offsets) > 0
    over_row = per_row(values > 255, np.concatenate(([0], np.cumsum(counts)))) > 0

    bad = {}
    for r in np.flatnonzero(nulls):
        bad[int(r)] = "field 'pixels' is empty"
    for r in np.flatnonzero(invalid_row):
        bad.setdefault(int(r), "field 'pixels' holds characters other than digits and spaces")
    for r in np.flatnonzero(counts != NUM_PIXELS):
        bad.setdefault(int(r), f"field 'pixels' has {counts[r]} values, expected {NUM_PIXELS}")
    for r in np.flatnonzero(over_row):
        bad.setdefault(int(r), "field 'pixels' has a value outside 0..255")
    good = np.ones(n_rows, bool)
    good[list(bad)] = False
    token_good = np.repeat(good, counts)
    pixels = values[token_good].astype(np.uint8).reshape(-1, NUM_PIXELS)
    return pixels, bad


def _header(path: Path, gz: bool) -> list[str]:
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        line = fh.readline(1 << 16)
    return [c.strip().strip('"').lower() for c in line.decode("utf-8", "replace").strip().split(",")]


def read_csv(path: Path) -> RawData:
    """Read a FER2013 CSV (``emotion,pixels[,Usage]``, any header spacing, optionally gzipped).

    Raises:
        DataError: the file is empty, unreadable, or lacks the required columns.
    """
    names, gz = _csv_columns(path)
    table, malformed = _read_table(path, names, gz)
    n = table.num_rows
    problems = [f"line {ln}: wrong number of fields, expected {len(names)} (malformed CSV line)"
                for ln in malformed]
    if n == 0 and not malformed:
        raise DataError(f"{path}: the CSV has a header but no data rows.")
    # Line numbers of the rows we kept: the header is line 1, skipped lines shift the rest.
    skipped_lines = np.array(sorted(x for x in malformed if x > 0), np.int64)
    line_no = np.arange(n, dtype=np.int64) + 2
    for s in skipped_lines:
        line_no[line_no >= s] += 1
    labels, splits, bad = _labels_and_splits(table, names)
    pixels, pix_bad = parse_pixel_rows(table["pixels"])
    pix_ok = np.ones(n, bool)
    pix_ok[list(pix_bad)] = False
    for i, why in pix_bad.items():
        bad.setdefault(i, why)
    keep = np.ones(n, bool)
    keep[list(bad)] = False
    images = pixels[keep[pix_ok]].reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    idx = np.flatnonzero(keep)
    problems += [f"row {i + 1} (line {line_no[i]}): {bad[i]}" for i in sorted(bad)]
    return RawData(images, labels[keep], [splits[i] for i in idx], [f"row {i + 1}" for i in idx], problems)


def _csv_columns(path: Path) -> tuple[list[str], bool]:
    """The CSV's column names (checked: emotion and pixels present, none repeated) and whether it is gzipped."""
    empty_msg = f"{path}: the file is empty; expected a FER2013 CSV with columns emotion,pixels,Usage."
    if path.stat().st_size == 0:
        raise DataError(empty_msg)
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        names = _header(path, gz)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc}).") from None
    if names == [""]:
        raise DataError(empty_msg)
    missing = [c for c in ("emotion", "pixels") if c not in names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(repr(c) for c in names)}). A FER2013 CSV has the columns emotion,pixels,Usage."
        )
    if len(set(names)) != len(names):
        raise DataError(f"{path}: repeated column names in the header ({', '.join(names)}).")
    return names, gz


def _read_table(path: Path, names: list[str], gz: bool):
    """The CSV's rows as a pyarrow table of byte strings, and the line numbers of malformed lines (skipped)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    malformed: list[int] = []

    def on_invalid(row) -> str:
        malformed.append(row.number if row.number is not None else -1)
        return "skip"

    def read(threads: bool):
        stream = pa.input_stream(str(path), compression="gzip" if gz else None)
        return pcsv.read_csv(
            stream,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24, use_threads=threads),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.binary() for n in names},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )

    try:
        table = read(threads=True)
        if malformed:  # only a single-threaded read knows the line numbers of bad lines
            malformed.clear()
            table = read(threads=False)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({str(exc).strip()[:300]}).") from None
    return table, malformed


def _labels_and_splits(table, names: list[str]) -> tuple[np.ndarray, list, dict[int, str]]:
    """Each row's label (-1 when bad) and split (None when the CSV has no Usage column), and why
    each bad row is bad, by row index."""

    def text(col: str) -> list[str]:
        return [b.decode("utf-8", "replace").strip() for b in table[col].to_pylist()]

    n = table.num_rows
    bad: dict[int, str] = {}
    labels = np.full(n, -1, np.int64)
    for i, e in enumerate(text("emotion")):
        if e.isdigit() and int(e) < len(CLASS_NAMES):
            labels[i] = int(e)
        else:
            bad[i] = f"field 'emotion' is {shown(e)}, expected an integer 0..{len(CLASS_NAMES) - 1}"
    splits: list = [None] * n
    if "usage" in names:
        for i, u in enumerate(text("usage")):
            splits[i] = _USAGE.get(u.lower())
            if splits[i] is None:
                bad.setdefault(i, f"field 'Usage' is {shown(u)}, expected one of {', '.join(SPLITS)}")
    return labels, splits, bad


# ------------------------------------------------------------------- image folders
def find_layout(root: Path) -> list[tuple[Path, str | None, str]]:
    """List the class folders of an image-folder data set.

    Returns:
        ``(class_dir, split_dir_name_or_None, class_name)`` for every class folder.

    Raises:
        DataError: no class folders, or folder names that are not FER2013 classes.
    """
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_DIRS]
    found, unknown = [], []
    for parent, split_dir in ([(p, p.name.lower()) for p in split_dirs] or [(root, None)]):
        for cdir in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
            name = CLASS_ALIASES.get(cdir.name.lower())
            if name is None:
                unknown.append(str(cdir.relative_to(root)))
            else:
                found.append((cdir, split_dir, name))
    if unknown:
        raise DataError(
            f"{root}: unknown class folder(s) {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            + f". Expected the FER2013 classes: {', '.join(CLASS_NAMES)}."
        )
    if not found:
        raise DataError(
            f"{root}: no class folders found. Expected train/<class>/ and test/<class>/ "
            f"(or <class>/ directly) with class names {', '.join(CLASS_NAMES)}."
        )
    return found


def list_image_files(root: Path) -> list[tuple[Path, str | None, str]]:
    """List ``(file, split_dir, class_name)`` for every file in the class folders."""
    files = []
    for cdir, split_dir, name in find_layout(root):
        for dirpath, _dirs, names in os.walk(cdir):
            for fname in sorted(names):
                if fname.startswith(".") or fname.lower() in _IGNORED_FILES:
                    continue
                files.append((Path(dirpath) / fname, split_dir, name))
    return files


#: read_folder reports its progress after every this many files.
PROGRESS_EVERY = 2000


def _decode(root: Path, paths: list[Path], progress=None) -> list[tuple[np.ndarray | None, str | None]]:
    out = []
    prefix = len(str(root)) + 1  # every file lies under root: its name relative to root, cheaply
    for k, path in enumerate(paths, 1):
        try:
            out.append((read_face(path, name=str(path)[prefix:]), None))
        except DataError as exc:
            out.append((None, str(exc)))
        if progress is not None and (k % PROGRESS_EVERY == 0 or k == len(paths)):
            progress(k, len(paths))
    return out


def read_folder(root: Path, progress=None) -> RawData:
    """Read the image-folder layout: ``train/<class>/*``, ``test/<class>/*`` or ``<class>/*``.

    Images of any size and colour mode become 48x48 grayscale. The split comes from the
    file-name prefix (``Training_``, ``PublicTest_``, ``PrivateTest_``), else from the folder.
    ``progress(files done, files in all)`` is called as the files are read.

    Raises:
        DataError: the folder holds no class folders or no images.
    """
    files = list_image_files(root)
    if not files:
        raise DataError(f"{root}: the class folders hold no image files.")

    paths = [f for f, _, _ in files]
    # One process, no pool: worker processes break inside a Streamlit server, and threads only
    # add GIL contention; FER2013's plain 48x48 files skip the general decoder instead (see
    # images.read_face).
    decoded = _decode(root, paths, progress)
    prefix = len(str(root)) + 1  # every file lies under root: its name relative to root, cheaply

    images, labels, splits, origins, groups, problems = [], [], [], [], [], []
    for (path, split_dir, name), (arr, err) in zip(files, decoded):
        if err is not None:
            problems.append(err)
            continue
        match = _PREFIX.match(path.name)
        split = _USAGE[match.group(1).lower()] if match else (SPLIT_DIRS.get(split_dir) if split_dir else None)
        images.append(arr)
        labels.append(CLASS_NAMES.index(name))
        splits.append(split)
        groups.append(split_dir)
        origins.append(str(path)[prefix:])
    if not images:
        raise DataError(f"{root}: none of the {len(files)} files could be read as an image. First: {problems[0]}")
    return RawData(np.stack(images), np.asarray(labels, np.int64), splits, origins, problems, groups)
