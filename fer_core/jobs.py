"""Background training jobs: a SQLite job store, a process runner and a small scheduler.

The store is one SQLite file (``data/jobs.sqlite3``) in WAL mode, so the Streamlit server, the
CLI and every worker read and write it at the same time. Workers are detached OS processes
(``python -m fer_core jobs work ID``) that never touch Streamlit; pages only poll the store.

Scheduling has no daemon: every look at the store (a page refresh, a CLI call) and every
worker that ends calls :func:`schedule`, which marks dead workers ``interrupted`` and starts
queued jobs, oldest first, while slots are free.
"""

from __future__ import annotations

import enum
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from .config import data_dir, runs_dir
from .errors import FerError, JobError
from .trainconfig import TrainConfig

STORE_FILE = "jobs.sqlite3"
BUSY_TIMEOUT_S = 30  # how long a writer waits for another process before giving up
LOG_FILE = "log.txt"
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 30.0  # no heartbeat for this long: the worker is gone (or hung)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    slot INTEGER,
    device TEXT,
    run_dir TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    total_epochs INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,
    heartbeat REAL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);
"""


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
RESUMABLE = {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}


@dataclass
class Job:
    """One row of the job store."""

    id: int
    config: dict
    status: JobStatus
    created: float
    started: float | None
    finished: float | None
    pid: int | None
    slot: int | None
    device: str | None
    run_dir: str
    epoch: int
    total_epochs: int
    step: int
    steps: int
    metrics: dict
    heartbeat: float | None
    error: str | None
    cancel_requested: bool
    resume: bool

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        values = dict(row)
        values["config"] = json.loads(values["config"])
        values["metrics"] = json.loads(values["metrics"] or "{}")
        values["status"] = JobStatus(values["status"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["resume"] = bool(values["resume"])
        return cls(**values)

    @property
    def progress(self) -> float:
        """Fraction of the epochs done, counting the current epoch's batches."""
        part = self.step / self.steps if self.steps and self.status == JobStatus.RUNNING else 0.0
        return min((self.epoch + part) / max(self.total_epochs, 1), 1.0)

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def eta(self) -> float | None:
        """Seconds left, from the last epoch's duration (None until one is known)."""
        if self.status != JobStatus.RUNNING:
            return None
        per_epoch = self.metrics.get("epoch_seconds")
        if not per_epoch:
            return None
        left = self.total_epochs - self.epoch - (self.step / self.steps if self.steps else 0)
        return max(left, 0.0) * per_epoch

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["status"] = self.status.value
        out.update(progress=round(self.progress, 4), elapsed=self.elapsed, eta=self.eta)
        return out


# ------------------------------------------------------------------------- storage
def store_path() -> Path:
    return data_dir() / STORE_FILE


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    """Open the job store (created if missing): WAL mode, a busy timeout, rows as dicts.

    Raises:
        JobError: the file or its folder cannot be opened or written.
    """
    path = Path(path) if path else store_path()
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        conn = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA)
            return conn
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            # Switching a new file to WAL, and WAL recovery, can answer "locked" at once without
            # waiting on the busy handler when two processes open the store together: retry.
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(random.uniform(0.02, 0.2))
                continue
            raise JobError(f"Cannot open the job store {path}: {exc}. Check that the folder exists, "
                           "is writable and the disk is not full.") from None


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE) so read-then-write is atomic."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise JobError(f"The job store is not writable: {exc}.") from None
    try:
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise JobError(f"The job store could not record the change: {exc}. "
                       "Check that data/ is writable and the disk is not full.") from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class JobStore:
    """Every read and state change of the job table."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else store_path()
        self.conn = connect(self.path)

    def close(self) -> None:
        self.conn.close()

    # ----------------------------------------------------------------- reading
    def get(self, job_id: int) -> Job:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"There is no job {job_id}; 'python -m fer_core jobs list' shows them.")
        return Job.from_row(row)

    def list(self, status: JobStatus | None = None) -> list[Job]:
        """All jobs, newest first (optionally of one status)."""
        if status is None:
            rows = self.conn.execute("SELECT * FROM jobs ORDER BY id DESC").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM jobs WHERE status = ? ORDER BY id DESC",
                                     (JobStatus(status).value,)).fetchall()
        return [Job.from_row(r) for r in rows]

    # ----------------------------------------------------------------- changes
    def submit(self, cfg: TrainConfig, run_dir: str | Path | None = None) -> int:
        """Queue a training job; its run directory is created now so its log has a home."""
        from .train import new_run_dir

        cfg = cfg.validate()
        path = Path(run_dir) if run_dir else new_run_dir(cfg)
        path.mkdir(parents=True, exist_ok=True)
        with transaction(self.conn) as c:
            cur = c.execute("INSERT INTO jobs (config, status, created, run_dir, total_epochs) VALUES (?, ?, ?, ?, ?)",
                            (json.dumps(cfg.to_dict()), JobStatus.QUEUED.value, time.time(), str(path), cfg.epochs))
            return int(cur.lastrowid)

    def claim(self, slots: list[int]) -> list[Job]:
        """Mark the oldest queued jobs running, one per free slot, atomically; return them."""
        with transaction(self.conn) as c:
            used = {r["slot"] for r in c.execute("SELECT slot FROM jobs WHERE status = ?", (JobStatus.RUNNING.value,))}
            free = [s for s in slots if s not in used]
            queued = c.execute("SELECT id FROM jobs WHERE status = ? ORDER BY id LIMIT ?",
                               (JobStatus.QUEUED.value, len(free))).fetchall()
            now = time.time()
            for slot, row in zip(free, queued):
                c.execute("UPDATE jobs SET status = ?, slot = ?, pid = NULL, started = ?, finished = NULL, heartbeat = ?,"
                          " step = 0, steps = 0, cancel_requested = 0, error = NULL WHERE id = ?",
                          (JobStatus.RUNNING.value, slot, now, now, row["id"]))
            ids = [row["id"] for row in queued]
        return [self.get(i) for i in ids]

    def set_pid(self, job_id: int, pid: int, device: str | None = None) -> None:
        with transaction(self.conn) as c:
            c.execute("UPDATE jobs SET pid = ?, device = COALESCE(?, device), heartbeat = ? WHERE id = ?",
                      (pid, device, time.time(), job_id))

    def beat(self, job_id: int, step: int = 0, steps: int = 0) -> bool:
        """Record a heartbeat (and the batch within the epoch); return True if cancel was asked."""
        with transaction(self.conn) as c:
            c.execute("UPDATE jobs SET heartbeat = ?, step = ?, steps = ? WHERE id = ? AND status = ?",
                      (time.time(), step, steps, job_id, JobStatus.RUNNING.value))
            row = c.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def record_epoch(self, job_id: int, epoch: int, total: int, metrics: dict) -> None:
        with transaction(self.conn) as c:
            c.execute("UPDATE jobs SET epoch = ?, total_epochs = ?, metrics = ?, step = 0, heartbeat = ? WHERE id = ?",
                      (epoch, total, json.dumps(metrics), time.time(), job_id))

    def finish(self, job_id: int, status: JobStatus, error: str | None = None) -> None:
        """Record how a worker ended (also over an ``interrupted`` set while it was slow to beat)."""
        with transaction(self.conn) as c:
            c.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, step = 0 WHERE id = ? AND status IN (?, ?)",
                      (JobStatus(status).value, error, time.time(), job_id, JobStatus.RUNNING.value,
                       JobStatus.INTERRUPTED.value))

    def cancel(self, job_id: int) -> JobStatus:
        """Cancel a queued job at once, or ask a running one to stop at its next batch."""
        with transaction(self.conn) as c:
            job = self.get(job_id)
            if job.status == JobStatus.QUEUED:
                c.execute("UPDATE jobs SET status = ?, finished = ? WHERE id = ?",
                          (JobStatus.CANCELLED.value, time.time(), job_id))
                return JobStatus.CANCELLED
            if job.status == JobStatus.RUNNING:
                c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                return JobStatus.RUNNING
        raise JobError(f"Job {job_id} is {job.status.value}; only queued or running jobs can be cancelled.")

    def resume(self, job_id: int) -> None:
        """Queue a cancelled, failed or interrupted job again; it continues from its last checkpoint."""
        with transaction(self.conn) as c:
            job = self.get(job_id)
            if job.status not in RESUMABLE:
                raise JobError(f"Job {job_id} is {job.status.value}; only cancelled, failed or interrupted jobs "
                               "can be resumed.")
            c.execute("UPDATE jobs SET status = ?, resume = 1, error = NULL, finished = NULL, cancel_requested = 0,"
                      " pid = NULL WHERE id = ?", (JobStatus.QUEUED.value, job_id))

    def delete(self, job_id: int, remove_files: bool = True) -> None:
        """Forget a job that is not running and remove its run directory."""
        with transaction(self.conn) as c:
            job = self.get(job_id)
            if job.status == JobStatus.RUNNING:
                raise JobError(f"Job {job_id} is running; cancel it first, then delete it.")
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        run = Path(job.run_dir)
        if remove_files and run.is_dir() and run.resolve().is_relative_to(runs_dir().resolve()):
            shutil.rmtree(run, ignore_errors=True)

    def reap(self, alive) -> list[int]:
        """Mark running jobs whose worker is gone (dead pid or stale heartbeat) ``interrupted``."""
        now = time.time()
        gone = [job for job in self.list(JobStatus.RUNNING)
                if (job.pid is not None and not alive(job.pid)) or (job.heartbeat or 0) < now - STALE_SECONDS]
        for job in gone:
            with transaction(self.conn) as c:
                c.execute("UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ? AND status = ? AND heartbeat = ?",
                          (JobStatus.INTERRUPTED.value, now,
                           "The worker process stopped without a word (killed, out of memory or machine restart). "
                           "Resume the job to continue from its last checkpoint.",
                           job.id, JobStatus.RUNNING.value, job.heartbeat))
        return [job.id for job in gone]


# -------------------------------------------------------------------------- runner
class Runner(Protocol):
    """Where jobs run. The local one starts processes; a cluster engine could submit them."""

    def slots(self) -> list[int]: ...

    def start(self, job: Job) -> int: ...

    def alive(self, pid: int) -> bool: ...


def visible_gpus() -> int:
    """Number of NVIDIA GPUs this machine shows, without importing TensorFlow (0 if none)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


class LocalRunner:
    """Detached worker processes on this machine: one per GPU (pinned with CUDA_VISIBLE_DEVICES),
    or ``FER_MAX_JOBS`` (default 1) on a CPU-only machine."""

    def __init__(self, max_jobs: int | None = None):
        self.gpus = visible_gpus()
        env_max = os.environ.get("FER_MAX_JOBS", "")
        self.max_jobs = max_jobs or (int(env_max) if env_max.isdigit() and int(env_max) > 0 else None)

    def slots(self) -> list[int]:
        return list(range(self.max_jobs or max(self.gpus, 1)))

    def start(self, job: Job) -> int:
        env = dict(os.environ)
        if self.gpus:
            ids = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(self.gpus)))).split(",")
            env["CUDA_VISIBLE_DEVICES"] = ids[job.slot % len(ids)].strip()
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("FER_DATA_DIR", str(data_dir()))
        env["PYTHONUNBUFFERED"] = "1"
        Path(job.run_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(job.run_dir) / LOG_FILE, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "fer_core", "jobs", "work", str(job.id)], cwd=root, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # outlives the Streamlit server
        return proc.pid

    def alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a finished child that its parent has not waited for yet is a zombie: dead
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True


def schedule(store: JobStore | None = None, runner: Runner | None = None) -> list[int]:
    """Mark dead workers interrupted, then start queued jobs while slots are free."""
    own = store is None
    store = store or JobStore()
    runner = runner or LocalRunner()
    try:
        store.reap(runner.alive)
        started = []
        for job in store.claim(runner.slots()):
            try:
                store.set_pid(job.id, runner.start(job))
                started.append(job.id)
            except OSError as exc:
                store.finish(job.id, JobStatus.FAILED, f"Could not start the worker process: {exc}.")
        return started
    finally:
        if own:
            store.close()


def submit(cfg: TrainConfig, store: JobStore | None = None, runner: Runner | None = None) -> int:
    """Queue a job and start it if a slot is free; return its id."""
    store = store or JobStore()
    job_id = store.submit(cfg)
    schedule(store, runner)
    return job_id


# -------------------------------------------------------------------------- worker
def work(job_id: int, store_file: str | Path | None = None) -> int:
    """Run one claimed job in this process (the body of ``python -m fer_core jobs work ID``).

    A heartbeat thread records liveness and batch progress and picks up cancel requests; the
    training loop stops at the next batch when one arrives. Returns a process exit status.
    """
    from .train import train

    store = JobStore(store_file)
    job = store.get(job_id)
    if job.status != JobStatus.RUNNING:
        print(f"job {job_id} is {job.status.value}, not claimed to run; nothing to do")
        return 1
    store.set_pid(job_id, os.getpid(), device=_device_name())
    cancel, done = threading.Event(), threading.Event()
    where = {"step": 0, "steps": 0}

    def heartbeat():
        beats = JobStore(store.path)  # SQLite connections are not shared across threads
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                if beats.beat(job_id, where["step"], where["steps"]):
                    cancel.set()
            except FerError as exc:
                print(f"heartbeat not recorded: {exc}", flush=True)
        beats.close()

    def on_batch(epoch, step, steps):
        where.update(step=step, steps=steps)

    def on_epoch(epoch, total, row):
        store.record_epoch(job_id, epoch, total, row)

    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    run_dir = Path(job.run_dir)
    status, error = JobStatus.FAILED, None
    try:
        resume = job.resume and (run_dir / "state.json").exists()
        cfg = None if resume else TrainConfig.from_dict(job.config)
        print(f"job {job_id}: {'resuming' if resume else 'starting'} {job.config.get('arch')} in {run_dir}", flush=True)
        train(cfg, run_dir, resume=resume, on_epoch=on_epoch, on_batch=on_batch, should_stop=cancel.is_set, verbose=2)
        info = json.loads((run_dir / "run.json").read_text())
        status = JobStatus.SUCCEEDED if info.get("status") == "finished" else JobStatus.CANCELLED
    except Exception as exc:  # a failed job must say why, whatever went wrong
        traceback.print_exc()
        error = _explain(exc)
    finally:
        done.set()
        beat.join(timeout=HEARTBEAT_SECONDS * 2)
    print(f"job {job_id}: {status.value}" + (f": {error}" if error else ""), flush=True)
    try:
        store.finish(job_id, status, error)
        schedule(store)  # start the next queued job even when no browser is open
    except FerError as exc:  # the next look at the store will find this worker gone
        print(f"job {job_id}: could not record the end of the job: {exc}", flush=True)
        return 1
    finally:
        store.close()
    return 0 if status != JobStatus.FAILED else 1


def _explain(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, FerError) else str(exc)
    if isinstance(exc, OSError) and exc.errno == 28:
        text += " The disk is full: free some space, then resume the job."
    elif isinstance(exc, PermissionError):
        text += " A file or folder is not writable: fix its permissions, then resume the job."
    return text


def _device_name() -> str:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible_gpus() and gpus not in (None, "", "-1"):
        return f"GPU {gpus}"
    return f"CPU ({os.cpu_count()} cores)"


def fmt_seconds(value) -> str:
    """``h:mm:ss`` for a duration in seconds (elapsed, ETA), ``-`` when unknown."""
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"


def read_log(job: Job, tail: int = 20_000) -> str:
    """The end of a job's log file ('' if none yet)."""
    path = Path(job.run_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(max(path.stat().st_size - tail, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
