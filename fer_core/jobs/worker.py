"""The worker: runs one claimed job in its own process (``python -m fer_core jobs work ID``).

It holds the job's lease (its attempt number) and checks it on every heartbeat and before
every write to the store and the run directory; once the lease is lost (the scheduler found
the worker silent and gave the job up) it stops without writing anything more. The run
directory's lock keeps any second process from writing the run at the same time.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import traceback
from pathlib import Path

from fer_core.config import data_dir
from fer_core.device import device_line, device_name
from fer_core.errors import FerError
from fer_core.jobs.scheduler import schedule
from fer_core.jobs.sqlite import STORE_FILE
from fer_core.jobs.store import HEARTBEAT_SECONDS, JobStatus, JobStore, LeaseLost
from fer_core.runs import rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.trainer import train


def work(job_id: int, store_file: str | Path | None = None, tee: bool = False) -> int:
    """Run one claimed job in this process; return a process exit status.

    A heartbeat thread records liveness and batch progress and picks up cancel requests; the
    training loop stops at the next batch when one arrives or when the lease is lost. ``tee``:
    also append everything printed to the run's ``log.txt`` (a Ray worker's output goes to
    Ray's log; the run directory then holds the same files as a local run's).
    """
    if not tee:
        return _work(job_id, store_file)
    path = Path(store_file) if store_file else data_dir(create=False) / STORE_FILE
    log_file = None
    if path.is_file():
        try:
            with JobStore(path) as store:
                log_file = open(rundir.log_path(store.get(job_id).run_dir), "a")
        except (OSError, FerError):
            pass  # the checks in _work say what is wrong
    if log_file is None:
        return _work(job_id, store_file)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(saved[0], log_file), _Tee(saved[1], log_file)
    try:
        return _work(job_id, store_file)
    finally:
        sys.stdout, sys.stderr = saved
        log_file.close()


class _Tee:
    """A text stream that writes to two (the process's own output and the run's log)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


def _work(job_id: int, store_file: str | Path | None = None) -> int:
    path = Path(store_file) if store_file else data_dir(create=False) / STORE_FILE
    if not path.is_file():  # on a cluster node that does not share FER_DATA_DIR: say so, create nothing
        print(f"job {job_id}: the job store {path} cannot be seen from this machine ({socket.gethostname()}); "
              "FER_DATA_DIR must be the same shared folder on every machine that runs jobs.", flush=True)
        return 1
    store = JobStore(path)
    job = store.get(job_id)
    attempt = job.attempt
    if job.status != JobStatus.RUNNING or not store.set_pid(job_id, os.getpid(), device_name(), attempt):
        print(f"job {job_id} is {job.status.value}, not claimed to run by this attempt; nothing to do")
        store.close()
        return 1
    cancel, done, lost = threading.Event(), threading.Event(), threading.Event()
    where = {"step": 0, "steps": 0}

    def heartbeat():
        with JobStore(store.path) as beats:  # SQLite connections are not shared across threads
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    if beats.beat(job_id, where["step"], where["steps"], attempt):
                        cancel.set()
                except LeaseLost:
                    lost.set()
                    cancel.set()
                    return
                except FerError as exc:
                    print(f"heartbeat not recorded: {exc}", flush=True)

    def on_batch(epoch, step, steps):
        where.update(step=step, steps=steps)

    def before_commit(epoch):
        if lost.is_set() or not store.holds(job_id, attempt):
            lost.set()
            raise LeaseLost(job_id, attempt)

    def on_epoch(epoch, total, row):
        store.record_epoch(job_id, epoch, total, row, attempt)

    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    run_dir = Path(job.run_dir)
    status, error = JobStatus.FAILED, None
    try:
        resume = job.resume and rundir.has_started(run_dir)
        cfg = None if resume else TrainConfig.from_dict(job.config)
        print(f"job {job_id}: {'resuming' if resume else 'starting'} {job.config.get('arch')} in {run_dir} "
              f"(attempt {attempt}); {device_line()}", flush=True)
        if not run_dir.is_dir():
            raise FerError(f"The run directory {run_dir} cannot be seen from this machine ({socket.gethostname()}); "
                           "FER_DATA_DIR must be the same shared folder on every machine that runs jobs.")
        train(cfg, run_dir, resume=resume, epochs=job.total_epochs if resume else None, on_epoch=on_epoch,
              on_batch=on_batch, should_stop=cancel.is_set, before_commit=before_commit, verbose=2)
        finished = rundir.is_finished(rundir.read_info(run_dir))
        status = JobStatus.SUCCEEDED if finished else JobStatus.CANCELLED
    except LeaseLost as exc:
        lost.set()
        error = str(exc)
    except Exception as exc:  # a failed job must say why, whatever went wrong
        if disk_problem(exc) is None:  # a full or read-only disk needs a sentence, not a traceback
            traceback.print_exc()
        error = explain(exc)
    finally:
        done.set()
        beat.join(timeout=HEARTBEAT_SECONDS * 2)
    if lost.is_set():
        print(f"job {job_id}: attempt {attempt} lost its lease; stopping without writing", flush=True)
        store.close()
        return 1
    print(f"job {job_id}: {status.value}" + (f": {error}" if error else ""), flush=True)
    try:
        store.finish(job_id, status, error, attempt)
        schedule(store)  # start the next queued job even when no browser is open
    except FerError as exc:  # the next look at the store will find this worker gone
        print(f"job {job_id}: could not record the end of the job: {exc}", flush=True)
        return 1
    finally:
        store.close()
    return 0 if status != JobStatus.FAILED else 1


#: What to do about the file-system errors a training job meets, by errno.
DISK_ADVICE = {
    errno.ENOSPC: "The disk is full: free some space, then resume the job.",
    errno.EDQUOT: "Your disk quota is used up: free some space, then resume the job.",
    errno.EROFS: "The run directory's file system is read-only (a disk remounted read-only after an error, or a "
                 "read-only mount): make it writable again, or move the run to a writable disk, then resume the job.",
    errno.EACCES: "A file or folder is not writable: fix its permissions, then resume the job.",
    errno.EPERM: "A file or folder is not writable: fix its permissions, then resume the job.",
}


def disk_problem(exc: BaseException) -> OSError | None:
    """The file-system error (full, read-only, not permitted) behind ``exc``, if any: libraries
    often wrap it in one of their own exceptions."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ADVICE:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def explain(exc: BaseException) -> str:
    """A failed job's error for the user, with what to do next."""
    os_error = disk_problem(exc)
    if os_error is not None:
        where = f" ({os_error.filename})" if os_error.filename else ""
        return f"{os_error.strerror or os_error}{where}. {DISK_ADVICE[os_error.errno]}"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, FerError) else str(exc)
