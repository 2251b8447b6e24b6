"""The data layer: one function loads any FER2013 source into a :class:`Dataset`.

Sources: the Kaggle CSV (``fer2013.csv`` or ``icml_face_data.csv``, optionally gzipped),
the image-folder layout, a folder holding one of those (e.g. an extracted zip), or
``"demo"``, a synthetic set drawn by :mod:`fer_core.data.demo`. Parsed sources are cached under
``data/cache`` keyed on their content, so a second load takes a fraction of a second.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from fer_core import files
from fer_core.config import CLASS_NAMES, DEMO_SOURCE, allowed_roots, cache_dir, datasets_dir, fer2013_dir, read_only
from fer_core.data import readers
from fer_core.data.dataset import Dataset, stratified_split
from fer_core.data.demo import make_demo_dataset
from fer_core.errors import DataError

__all__ = ["Dataset", "check_allowed", "find_datasets", "known_sources", "load_dataset", "merge_classes", "merged_class_names",
           "parse_merge", "resolve_source", "source_choices", "stratified_split", "write_csv"]

#: Bump when readers change what they return, so stale caches are ignored.
CACHE_VERSION = 1
#: How many problems an error message lists before it just counts the rest.
MAX_LISTED = 5
_CSV_SUFFIXES = (".csv", ".csv.gz", ".gz")
DEMO_PER_CLASS = 500  # faces per class of the demo data set unless "demo:N" says otherwise


def _fill_missing_splits(raw: readers.RawData, seed: int = 0) -> np.ndarray:
    """Complete the split of images whose source did not give one.

    Images in a ``test`` folder without a file-name prefix are halved into PublicTest and
    PrivateTest; images with no split information at all get a stratified 80/10/10 split.
    """
    splits = np.array(raw.splits, dtype=object)
    groups = np.array(raw.groups if raw.groups is not None else [None] * len(splits), dtype=object)
    missing = np.array([s is None for s in splits], bool)
    in_test = missing & (groups == "test")
    if in_test.any():
        splits[in_test] = stratified_split(raw.labels[in_test], {"PublicTest": 0.5, "PrivateTest": 0.5}, seed)
    rest = missing & ~in_test
    if rest.any():
        splits[rest] = stratified_split(raw.labels[rest], {"Training": 0.8, "PublicTest": 0.1, "PrivateTest": 0.1}, seed)
    return splits.astype(str)


def parse_merge(spec: str, class_names: tuple[str, ...] | None = CLASS_NAMES) -> dict[str, str]:
    """Parse a class merging spec such as ``"disgust=angry"`` or ``"disgust->angry, fear=sad"``.

    ``class_names`` None checks the form only (the data set's classes are not known yet).

    Raises:
        DataError: a part is malformed or names an unknown class.
    """
    mapping: dict[str, str] = {}
    known = class_names
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        src, sep, dst = part.replace("->", "=").partition("=")
        src, dst = src.strip().lower(), dst.strip().lower()
        if not sep or not src or not dst:
            raise DataError(f"Class merging {part!r}: write it as 'from=into', e.g. 'disgust=angry'.")
        for name in (src, dst):
            if known is not None and name not in known:
                raise DataError(f"Class merging {part!r}: unknown class {name!r}; classes are {', '.join(class_names)}.")
        if src == dst:
            raise DataError(f"Class merging {part!r}: a class cannot be merged into itself.")
        mapping[src] = dst
    for dst in mapping.values():
        if dst in mapping:
            raise DataError(f"Class merging {spec!r}: {dst!r} is merged away, so nothing can be merged into it.")
    return mapping


def merge_classes(ds: Dataset, spec: str) -> Dataset:
    """Merge classes (e.g. ``"disgust=angry"`` gives 6 classes), keeping the others' order."""
    mapping = parse_merge(spec, ds.class_names)
    if not mapping:
        return ds
    new_names = tuple(c for c in ds.class_names if c not in mapping)
    lookup = np.array([new_names.index(mapping.get(c, c)) for c in ds.class_names], np.int64)
    canonical = ",".join(f"{k}={v}" for k, v in sorted(mapping.items()))
    merged = ds.merge + "," + canonical if ds.merge else canonical
    return replace(ds, labels=lookup[ds.labels], class_names=new_names, merge=merged)


def merged_class_names(spec: str, class_names: tuple[str, ...] = CLASS_NAMES) -> tuple[str, ...]:
    """Return the class names left after merging with ``spec``."""
    mapping = parse_merge(spec, class_names)
    return tuple(c for c in class_names if c not in mapping)


# ----------------------------------------------------------------------- sources
def check_allowed(source: str | os.PathLike) -> str:
    """Check that a source typed in the app lies inside the folders it may read; return it.

    The path is normalised (``..`` removed) before the check, so no typed path climbs out.
    Symbolic links placed inside an allowed folder by the machine's owner are followed.

    Raises:
        DataError: the path is outside every allowed folder.
    """
    text = str(source).strip()
    if text.lower() == DEMO_SOURCE or _demo_size(text) is not None:
        return text
    path = Path(os.path.abspath(Path(text).expanduser()))
    roots = allowed_roots()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise DataError(f"{text}: outside the folders this server may read ({', '.join(map(str, roots))}). "
                        "Set FER2013_DIR to it (or add its folder to FER_DATA_ROOTS) and restart the app, or copy "
                        "or upload the data set into data/datasets. The command line reads any path you type.")
    return text


def resolve_source(source: str | os.PathLike) -> tuple[str, Path | None]:
    """Work out what kind of source a string names.

    Returns:
        ``("demo", None)``, ``("csv", file)`` or ``("folder", folder)``.

    Raises:
        DataError: the path does not exist or holds no recognisable data set.
    """
    text = str(source).strip()
    if text.lower() == DEMO_SOURCE or _demo_size(text) is not None:
        return DEMO_SOURCE, None
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Give a FER2013 CSV, an image folder, or 'demo'.")
    if not path.is_file() and not path.is_dir():
        raise DataError(f"{path}: neither a regular file nor a folder (a device or a pipe). Give a FER2013 CSV, "
                        "an image folder, or 'demo'.")
    if path.is_file():
        if path.name.lower().endswith(_CSV_SUFFIXES):
            return "csv", path
        raise DataError(f"{path}: not a CSV file (.csv or .csv.gz). For images, give the folder that holds train/ and test/.")
    entries = [p for p in path.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    names = {p.name.lower() for p in entries if p.is_dir()}
    if names & set(readers.SPLIT_DIRS) or names & set(readers.CLASS_ALIASES):
        return "folder", path
    csvs = sorted(p for p in entries if p.is_file() and p.name.lower().endswith(_CSV_SUFFIXES))
    if len(csvs) == 1:
        return "csv", csvs[0]
    subdirs = [p for p in entries if p.is_dir()]
    if len(subdirs) == 1 and not csvs:  # e.g. a zip that wraps everything in one folder
        return resolve_source(subdirs[0])
    raise DataError(
        f"{path}: found neither a FER2013 CSV nor train/<class>/ and test/<class>/ folders"
        + (f" (several CSV files: {', '.join(p.name for p in csvs[:5])}; give one of them)" if csvs else "")
        + "."
    )


def _file_digest(path: Path) -> str:
    """SHA-1 of a file's content, remembered per (size, mtime) so it is computed once."""
    st = path.stat()
    memo_file = cache_dir() / "digests.json"
    memo = files.read_json(memo_file, {})
    if not isinstance(memo, dict):
        memo = {}
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns]
    if isinstance(memo.get(key), list) and memo[key][:2] == stamp:
        return memo[key][2]
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha1").hexdigest()
    memo[key] = stamp + [digest]
    if read_only():
        return digest
    try:
        files.write_text(memo_file, json.dumps(memo))
    except OSError:
        pass
    return digest


def _folder_signature(root: Path) -> bytes:
    """Names, sizes and modification times of every file under the class folders."""
    parts = []
    for cdir, _split, name in readers.find_layout(root):
        for dirpath, _dirs, names in os.walk(cdir):
            with os.scandir(dirpath) as it:
                for e in it:
                    if e.is_file():
                        st = e.stat()
                        parts.append(f"{e.path}|{name}|{st.st_size}|{st.st_mtime_ns}")
    parts.sort()
    return "\n".join(parts).encode()


def _demo_size(text: str) -> int | None:
    """Per-class size of a ``demo:N`` source (a smaller or larger demo set), else None."""
    head, _, tail = text.partition(":")
    if head.lower() == DEMO_SOURCE and tail.isdigit() and 1 <= int(tail) <= 5000:
        return int(tail)
    return None


def _fingerprint(kind: str, path: Path | None, skip_bad: bool, demo_args: dict) -> str:
    """A cache key that changes whenever the source's content does."""
    h = hashlib.sha1(f"{CACHE_VERSION}|{kind}|{skip_bad}|{sorted(demo_args.items())}".encode())
    if kind == "csv":
        h.update(_file_digest(path).encode())
    elif kind == "folder":
        # Hashing every image would cost as much as decoding them; name, size and
        # modification time of every file change whenever a file is edited.
        h.update(_folder_signature(path))
    return h.hexdigest()


_CACHE_ARRAYS = ("images", "labels", "splits", "origins")


def _save_cache(file: Path, ds: Dataset) -> None:
    if read_only():
        return  # a read-only server reads the caches the full server wrote, and writes none
    meta = {"class_names": list(ds.class_names), "source": ds.source, "skipped": ds.skipped, "problems": ds.problems}
    files.save_npz(file, {"images": ds.images, "labels": ds.labels, "splits": ds.splits.astype("U11"),
                          "origins": ds.origins.astype(str)}, meta)


def _load_cache(file: Path) -> Dataset | None:
    loaded = files.load_npz(file, _CACHE_ARRAYS)
    if loaded is None:
        return None
    z, meta = loaded
    try:
        return Dataset(z["images"], z["labels"], z["splits"], tuple(meta["class_names"]), meta["source"],
                       z["origins"], meta["skipped"], meta["problems"])
    except (KeyError, TypeError):
        return None  # a cache from another version is rebuilt


def _check_problems(where: str, problems: list[str], skip_bad: bool, kind: str) -> None:
    if not problems or skip_bad:
        return
    what = "rows" if kind == "csv" else "files"
    listed = "; ".join(p if len(p) <= 300 else p[:300] + "..." for p in problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(
        f"{where}: {len(problems)} bad {what}: {listed}{more}. Fix them, or load with "
        f"skip_bad=True (CLI --skip-bad, the 'Skip bad {what}' box in the app) to skip and count them."
    )


def load_dataset(source: str | os.PathLike = DEMO_SOURCE, *, merge: str = "", skip_bad: bool = False,
                 use_cache: bool = True, demo_per_class: int = DEMO_PER_CLASS, demo_seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Load a FER2013 data set from any supported source.

    Args:
        source: ``"demo"`` (or ``"demo:N"``, N faces per class), a CSV file (``.csv``/``.csv.gz``), an image folder, or a folder
            holding one of these.
        merge: optional class merging such as ``"disgust=angry"``.
        skip_bad: skip and count bad rows/files instead of raising.
        use_cache: read and write the parsed data set under ``data/cache``.
        demo_per_class: images per class of the demo set.
        demo_seed: seed of the demo set.
        progress: called with (files read, files in all) while an image folder is read.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: the source is missing, empty or (without ``skip_bad``) has bad rows or files.
    """
    kind, path = resolve_source(source)
    demo_per_class = _demo_size(str(source).strip()) or demo_per_class
    demo_args = {"per_class": demo_per_class, "seed": demo_seed} if kind == DEMO_SOURCE else {}
    cache_file = None
    if use_cache:
        cache_file = cache_dir() / f"{_fingerprint(kind, path, skip_bad, demo_args)}.npz"
        cached = _load_cache(cache_file) if cache_file.exists() else None
        if cached is not None:
            return merge_classes(cached, merge)

    if kind == DEMO_SOURCE:
        ds = make_demo_dataset(per_class=demo_per_class, seed=demo_seed)
    else:
        raw = readers.read_csv(path) if kind == "csv" else readers.read_folder(path, progress)
        _check_problems(str(path), raw.problems, skip_bad, kind)
        ds = Dataset(raw.images, raw.labels, _fill_missing_splits(raw), CLASS_NAMES, str(path),
                     np.asarray(raw.origins, dtype=str), len(raw.problems), raw.problems[:MAX_LISTED])
    if cache_file is not None:
        try:
            _save_cache(cache_file, ds)
        except OSError:
            pass  # a read-only or full disk must not stop the load itself
    return merge_classes(ds, merge)


def find_datasets() -> list[Path]:
    """List the data sets under ``data/datasets`` (each a CSV file or a folder)."""
    found, folder = [], datasets_dir()
    if not folder.is_dir():  # a read-only server on a data folder nobody has filled yet
        return []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        try:
            resolve_source(p)
        except DataError:
            continue
        found.append(p)
    return found


def known_sources() -> list[str]:
    """The data sets the app knows of: ``FER2013_DIR`` (when it is a folder), then those under ``data/datasets``."""
    env = fer2013_dir()
    return list(dict.fromkeys([*([env] if env and os.path.isdir(env) else []), *map(str, find_datasets())]))


def describe_source(source: str) -> str:
    """A short name for a data source and how many images it holds, without loading it:
    ``"fer2013 · 35,887 images"`` (files in its class folders, or rows of its CSV), ``"demo ·
    3,500 images"``; only the name when it cannot be read (loading it says why)."""
    try:
        kind, path = resolve_source(source)
    except DataError:
        return Path(str(source)).name or str(source)
    if kind == DEMO_SOURCE:
        per_class = _demo_size(str(source).strip()) or DEMO_PER_CLASS
        return f"demo · {per_class * len(CLASS_NAMES):,} images"
    name = path.name if path.name.lower() not in readers.SPLIT_DIRS else f"{path.parent.name}/{path.name}"
    try:
        if kind == "folder":
            count = len(readers.list_image_files(path))
        else:
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rb") as fh:
                count = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1  # the header
    except (OSError, EOFError, DataError):
        return name
    return f"{name} · {count:,} images"


def source_choices(active: str) -> list[str]:
    """The data sources a page offers: the demo, the active one, then :func:`known_sources`."""
    return list(dict.fromkeys([DEMO_SOURCE, active, *known_sources()]))


FER2013_NAMES = ("fer2013", "fer-2013", "fer_2013", "icml_face_data")


def data_identity(source: str) -> str:
    """What data set a source is, for comparing two models: ``"demo"`` (with its size), ``"FER2013"``
    for any copy of it (a CSV, an image folder, on any path: they hold the same faces), else
    the source's real path."""
    text = source.strip()
    if not text or text.split(":")[0] == "demo":
        return text or "demo"
    name = Path(text.rstrip("/")).name.lower()
    if any(name.startswith(n) for n in FER2013_NAMES) or name in ("fer", "fer13"):
        return "FER2013"
    return os.path.realpath(text)


def data_name(source: str) -> str:
    """A source as a page may show it (no server path: only its last part)."""
    ident = data_identity(source)
    return ident if ident in ("FER2013",) or ident.startswith("demo") else Path(source.rstrip("/")).name


_NUMBERS = [str(i) for i in range(256)]


def write_csv(ds: Dataset, path: str | os.PathLike, icml: bool = False) -> Path:
    """Write a data set in the Kaggle CSV layout (gzipped when the name ends in ``.gz``).

    Args:
        ds: the data set; its labels must be FER2013's 7 classes (no merging).
        path: the file to write.
        icml: use the ``icml_face_data.csv`` header (``emotion, Usage, pixels``).

    Returns:
        The path written.
    """
    if ds.class_names != CLASS_NAMES:
        raise DataError("Only a data set with FER2013's 7 classes can be written as a FER2013 CSV.")
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        fh.write("emotion, Usage, pixels\n" if icml else "emotion,pixels,Usage\n")
        for img, label, split in zip(ds.images, ds.labels, ds.splits):
            pixels = " ".join([_NUMBERS[v] for v in img.ravel().tolist()])
            fh.write(f"{label},{split},{pixels}\n" if icml else f"{label},{pixels},{split}\n")
    return path
