"""The run directory: the one module that knows its files, reads them and writes them.

A training run lives in one folder (under ``data/runs`` unless told otherwise):

- ``config.json``: the :class:`~fer_core.runs.trainconfig.TrainConfig` it was trained with;
- ``run.json``: data source, device, status (:mod:`fer_core.runs.status`), timings, batch-norm recalibration, extensions;
- ``state.json``: the **commit record** of the last finished epoch: its number, the names of
  the checkpoint files that go with it and the whole metric history up to it;
- ``metrics.jsonl``: the same history, one JSON line per epoch, for other tools to read;
- ``last-eNNNN.keras`` (model and optimizer state, to resume) and ``best-eNNNN.keras`` (best
  validation accuracy so far); runs made before the commit record have ``last.keras`` and
  ``best.keras``;
- ``model.keras``: the final model (the selected checkpoint, no optimizer);
- ``classes.json``, ``versions.json``, ``log.txt`` (a background job's output) and ``.lock``;
- ``tensorboard/``: TensorBoard event logs, when TensorBoard is installed (see ``tblog``);
- ``lease.json`` and ``worker-N.json``: a background job's lease and its worker's report of
  attempt N (their contents are :mod:`fer_core.jobs.reports`'s);
- ``dynamics.npz``: training dynamics, the true class's probability of a fixed sample of
  Training faces after each epoch (see :mod:`fer_core.training.dynamics`).

A shipped model folder (``fer_core/shipping/default_model``) holds ``model.keras``, ``config.json`` and
``classes.json`` of the same format, and what :mod:`fer_core.runs.model_folder` adds.

An epoch is recorded crash-consistently: new checkpoint files are written under new names,
then ``state.json`` is replaced in one rename (the commit), then superseded files are removed
and ``metrics.jsonl`` is rewritten. A process killed at any point leaves the previous epoch's
record or the new one, never a mix, and :func:`restore` tidies what a crash left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fer_core import files
from fer_core.config import DEFAULT_MODEL, FAST_MODEL, runs_dir
from fer_core.errors import ConfigError, FerError
from fer_core.runs.status import RunStatus
from fer_core.runs.trainconfig import MAX_EPOCHS, TrainConfig

CONFIG = "config.json"
INFO = "run.json"
STATE = "state.json"
METRICS = "metrics.jsonl"
CLASSES = "classes.json"
VERSIONS = "versions.json"
LOG = "log.txt"
LOCK = ".lock"
FINAL = "model.keras"
LEGACY_LAST, LEGACY_BEST = "last.keras", "best.keras"
EVAL_CACHE = "eval"  # folder of cached evaluations inside a run
TENSORBOARD = "tensorboard"  # TensorBoard event logs inside a run (see fer_core.training.tblog)
LEASE = "lease.json"  # a job's lease (fer_core.jobs.reports)
DYNAMICS = "dynamics.npz"  # per epoch, the true class's probability of sampled Training faces (training.dynamics)
#: Keys of ``run.json`` set when a job is submitted: the user's note, the job's id, the user's
#: tags (a list of strings), the sweep the job belongs to (its id) and the configuration's label
#: within the sweep (what sets it apart from the sweep's other configurations, seeds aside).
#: Training keeps them.
NOTE, JOB, TAGS, SWEEP, SWEEP_CONFIG = "note", "job", "tags", "sweep", "sweep_config"
SUBMITTED = (NOTE, JOB, TAGS, SWEEP, SWEEP_CONFIG)
#: The key of ``run.json`` that holds a job's request while it waits (``{"config", "runner"}``):
#: what ``jobs repair`` queues again when the store is lost. Training drops it (config.json then holds it).
QUEUED = "queued"
#: The key in ``run.json`` under which batch-norm recalibration is recorded (see calibrate).
BN_RECORD = "bn_recalibration"


def is_finished(info: dict) -> bool:
    """True when a ``run.json`` (as :func:`read_info` returns it) says its run finished."""
    return info.get("status") == RunStatus.FINISHED


#: A checkpoint file's name: ``last-eNNNN.keras`` or ``best-eNNNN.keras``.
CHECKPOINT_NAME = re.compile(r"^(last|best)-e(\d{4,})\.keras$")
_REPORT = re.compile(r"^worker-\d+\.json$")


# ----------------------------------------------------------------------- finding
def is_run(path: str | os.PathLike) -> bool:
    """True when ``path`` is a run directory (it has a config.json)."""
    return (Path(path) / CONFIG).is_file()


def is_model_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a ``model.keras`` (a shipped or copied model)."""
    return (Path(path) / FINAL).is_file()


def run_dirs(root: str | os.PathLike | None = None, with_queued: bool = False) -> list[Path]:
    """Every run directory under ``root`` (default ``data/runs``), newest first; ``with_queued``:
    also the folders of jobs still waiting (a ``run.json`` with their request, no config yet)."""
    root = Path(root) if root else runs_dir()
    if not root.is_dir():
        return []

    def waiting(p: Path) -> bool:
        try:
            return with_queued and QUEUED in read_info(p)
        except ConfigError:
            return False

    found = [p for p in root.iterdir() if p.is_dir() and (is_run(p) or waiting(p))]
    return sorted(found, key=lambda p: (p / (CONFIG if is_run(p) else INFO)).stat().st_mtime, reverse=True)


#: Names that mean the shipped models wherever a model is named, so no run may take them.
RESERVED_NAMES = (DEFAULT_MODEL, FAST_MODEL)


def new_run_dir(arch: str, name: str = "") -> Path:
    """Create a fresh, unique run directory under ``data/runs``: ``name`` or a time stamp and the arch."""
    if name:
        clean = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name.strip())[:80].strip(".")
        if not clean:
            raise ConfigError(f"Run name {name!r}: use letters, digits, '-', '_' or '.'.")
        if clean in RESERVED_NAMES:
            raise ConfigError(f"Run name {clean!r} names a shipped model ('--model {clean}'); choose another name.",
                              field="name")
        path = runs_dir() / clean
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise ConfigError(f"A run named {clean!r} already exists; choose another name.") from None
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = "".join(ch if ch.isalnum() else "-" for ch in arch.lower())[:40]
    for i in range(1000):
        path = runs_dir() / (f"{stamp}-{base}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FerError("Could not create a run directory; data/runs is full of same-second runs.")


def log_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / LOG


def read_log(run_dir: str | os.PathLike, tail: int = 20_000) -> str:
    """The end of a run's job log ('' if none yet)."""
    path = log_path(run_dir)
    try:
        with open(path, "rb") as fh:
            fh.seek(max(path.stat().st_size - tail, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ------------------------------------------------------------------ small files
def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The run's training configuration.

    Raises:
        ConfigError: missing, unreadable or invalid config.json.
    """
    return TrainConfig.load(Path(run_dir) / CONFIG)


def write_config(run_dir: str | os.PathLike, cfg: TrainConfig) -> None:
    files.write_json(Path(run_dir) / CONFIG, cfg.to_dict())


def read_info(run_dir: str | os.PathLike) -> dict:
    """``run.json`` ({} when there is none yet).

    Raises:
        ConfigError: the file exists but cannot be read.
    """
    path = Path(run_dir) / INFO
    if not path.exists():
        return {}
    value = files.read_json(path)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: unreadable (not a JSON object).")
    return value


def write_info(run_dir: str | os.PathLike, info: dict) -> None:
    files.write_json(Path(run_dir) / INFO, info)


def update_info(run_dir: str | os.PathLike, **changes) -> dict:
    """Merge ``changes`` into ``run.json``; return the new content."""
    info = {**read_info(run_dir), **changes}
    write_info(run_dir, info)
    return info


def read_classes(folder: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names saved beside a model or in a run, or None when absent or invalid."""
    names = files.read_json(Path(folder) / CLASSES)
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def write_classes(folder: str | os.PathLike, names) -> None:
    files.write_json(Path(folder) / CLASSES, list(names))


def read_merge(folder: str | os.PathLike) -> str:
    """The class merging a model folder's config.json records ('' when none or unreadable)."""
    raw = files.read_json(Path(folder) / CONFIG, {})
    return str(raw.get("merge", "") or "") if isinstance(raw, dict) else ""


def write_versions(run_dir: str | os.PathLike, versions: dict) -> None:
    files.write_json(Path(run_dir) / VERSIONS, versions)


def eval_cache_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / EVAL_CACHE


def lease_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / LEASE


def report_path(run_dir: str | os.PathLike, attempt: int) -> Path:
    """The report file of a job's attempt (one per attempt, see :mod:`fer_core.jobs.reports`)."""
    return Path(run_dir) / f"worker-{int(attempt)}.json"


def tensorboard_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / TENSORBOARD


# --------------------------------------------------------------------- models
def save_model(model, path: str | os.PathLike) -> Path:
    """Save a Keras model atomically: a process killed mid-save leaves the previous file intact."""
    return files.atomic_write(path, model.save)


def load_checkpoint(path: str | os.PathLike):
    """Load a training checkpoint with its optimizer state, to resume."""
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # a damaged file raises many types; all mean "cannot resume from it"
        raise ConfigError(f"{path}: cannot load this checkpoint ({type(exc).__name__}: {str(exc)[:200]}). "
                          "Start the run again.") from None


# ------------------------------------------------------------- the epoch record
@dataclass
class State:
    """The committed record of a run's progress."""

    epoch: int = 0
    last: str = ""  # checkpoint file names, relative to the run directory
    best: str = ""
    metrics: list[dict] = field(default_factory=list)

    @property
    def best_val(self) -> float:
        return max([r.get("val_accuracy", -1.0) for r in self.metrics] or [-1.0])


def read_state(run_dir: str | os.PathLike) -> State:
    """The last committed epoch (epoch 0, no files, when none has finished).

    A run from before the commit record (``{"epoch": N}`` only) is read with its
    ``last.keras``/``best.keras`` and the first N lines of ``metrics.jsonl``.
    """
    run_dir = Path(run_dir)
    raw = files.read_json(run_dir / STATE)
    if not isinstance(raw, dict) or not isinstance(raw.get("epoch"), int):
        return State()
    if "metrics" in raw:
        return State(raw["epoch"], raw.get("last", ""), raw.get("best", ""), list(raw["metrics"]))
    return State(raw["epoch"], LEGACY_LAST if (run_dir / LEGACY_LAST).exists() else "",
                 LEGACY_BEST if (run_dir / LEGACY_BEST).exists() else "", read_jsonl(run_dir / METRICS)[:raw["epoch"]])


def read_jsonl(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a half-written last line from a crash
    return rows


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch metrics of a run, from its commit record (empty when none yet)."""
    run_dir = Path(run_dir)
    if (run_dir / STATE).exists():
        return read_state(run_dir).metrics
    return read_jsonl(run_dir / METRICS)


def commit_epoch(run_dir: str | os.PathLike, model, row: dict) -> State:
    """Record a finished epoch: checkpoint, best checkpoint if it improved, metrics; crash-consistent.

    Returns:
        The new committed state.
    """
    run_dir = Path(run_dir)
    old = read_state(run_dir)
    epoch = int(row["epoch"])
    new = State(epoch, f"last-e{epoch:04d}.keras", old.best, [*old.metrics[:epoch - 1], row])
    save_model(model, run_dir / new.last)
    if row.get("val_accuracy", 0.0) > old.best_val or not old.best:
        new.best = f"best-e{epoch:04d}.keras"
        save_model(model, run_dir / new.best)
    files.write_json(run_dir / STATE, {"epoch": new.epoch, "last": new.last, "best": new.best, "metrics": new.metrics})
    tidy(run_dir, new)
    write_metrics_file(run_dir, new.metrics)
    return new


def write_metrics_file(run_dir: Path, rows: list[dict]) -> None:
    files.write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def tidy(run_dir: Path, state: State) -> None:
    """Remove checkpoints the state no longer names and temporary files a crash left."""
    keep = {state.last, state.best}
    for p in run_dir.iterdir():
        stale_ckpt = (CHECKPOINT_NAME.match(p.name) or p.name in (LEGACY_LAST, LEGACY_BEST)) and p.name not in keep
        if stale_ckpt or files.is_temp_name(p.name):
            p.unlink(missing_ok=True)


def lost_record(run_dir: Path) -> bool:
    """A history without a commit record: ``metrics.jsonl`` is written only after a commit, so
    rows there mean ``state.json`` existed (checkpoints alone are an epoch never committed)."""
    return not (run_dir / STATE).exists() and bool(read_jsonl(run_dir / METRICS))


def extension_problem(run_dir: str | os.PathLike, epochs) -> str | None:
    """Why a run cannot be resumed to ``epochs`` epochs in all (None when it can): the one rule for
    ``train --resume --epochs`` and ``jobs resume --epochs``. More than the epochs already done,
    within the configuration's range."""
    done = read_state(run_dir).epoch
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= done:
        return (f"--epochs {epochs} is not more than the {done} epochs already done; give a larger number to "
                "train on, or resume without --epochs to finish the epochs it planned")
    # more than done, so at least 1: only the upper bound is left
    return f"--epochs must be an integer from 1 to {MAX_EPOCHS} (got {epochs})" if epochs > MAX_EPOCHS else None


def start_fresh(run_dir: str | os.PathLike) -> None:
    """Clear a run's record before its first epoch (a new run in an existing folder)."""
    run_dir = Path(run_dir)
    (run_dir / STATE).unlink(missing_ok=True)
    tidy(run_dir, State())
    write_metrics_file(run_dir, [])


def has_started(run_dir: str | os.PathLike) -> bool:
    """True once a run has a commit record (at least one epoch, or a legacy state file), or
    training files without one (a lost record: resuming rebuilds or refuses it, never starts over)."""
    run_dir = Path(run_dir)
    return (run_dir / STATE).exists() or (run_dir.is_dir() and lost_record(run_dir))


def checkpoint(run_dir: str | os.PathLike, which: str) -> Path | None:
    """The committed ``"last"`` or ``"best"`` checkpoint file, None when there is none."""
    state = read_state(run_dir)
    name = state.last if which == "last" else state.best
    path = Path(run_dir) / name if name else None
    return path if path is not None and path.is_file() else None


def model_file(run_dir: str | os.PathLike) -> Path | None:
    """The model to evaluate or predict with: the final model, else the best, else the last checkpoint."""
    if (Path(run_dir) / FINAL).is_file():
        return Path(run_dir) / FINAL
    return checkpoint(run_dir, "best") or checkpoint(run_dir, "last")


def final_model(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / FINAL


# ------------------------------------------------------------------------ lock
@contextmanager
def lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run's exclusive lock while writing it: at most one process ever writes a run.

    The lock is the kernel's (``flock``), so it is released when its process ends however it
    ends, and a stale lock file means nothing.

    Raises:
        ConfigError: another process holds it.
    """
    path = Path(run_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(f"{run_dir}: another process (pid {holder}) is writing this run; wait for it to end "
                              "or stop it first.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_own_file(name: str) -> bool:
    """True for the names of the files and folders a run directory holds by our hand (see the
    module's docstring); anything else in it was put there by someone else."""
    return (name in (CONFIG, INFO, STATE, METRICS, CLASSES, VERSIONS, LOG, LOCK, FINAL, LEGACY_LAST, LEGACY_BEST,
                     EVAL_CACHE, TENSORBOARD, DYNAMICS, LEASE) or bool(CHECKPOINT_NAME.match(name) or _REPORT.match(name))
            or files.is_temp_name(name))


def is_locked(run_dir: str | os.PathLike) -> bool:
    """True while some process holds the run's lock."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
