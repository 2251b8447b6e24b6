"""The worker: runs one claimed job in its own process (``python -m fer_core jobs work ID ...``).

It reads its lease from the run directory and reports there (:mod:`fer_core.jobs.reports`),
so it runs the same on this machine and on a cluster node that shares only the run
directories. A cluster's worker never opens the job store; a local one opens it only after it
has ended, on the app's machine, to start the next queued job (and to record its end if its
disk refused the report). It checks the lease on every heartbeat, before every epoch it writes
and before it writes how it ended; once the lease is revoked (the scheduler found the worker
silent and gave the job up) or taken by another attempt, it stops without writing anything
more. The run directory's lock keeps any second process from writing the run at the same time.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from fer_core.device import device_line, device_name
from fer_core.errors import FerError
from fer_core.jobs import reports
from fer_core.jobs.scheduler import schedule
from fer_core.jobs.liveness import HEARTBEAT_SECONDS
from fer_core.jobs.store import LOCAL, JobStatus, JobStore, LeaseLost
from fer_core.runs import rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.trainer import train


def work(job_id: int, run_dir: str | Path, attempt: int, tee: bool = False) -> int:
    """Run attempt ``attempt`` of job ``job_id`` in this process; return a process exit status.

    A heartbeat thread reports liveness and batch progress and picks up cancel requests and a
    revoked lease; the training loop stops at the next batch when either arrives. ``tee``:
    also append everything printed to the run's ``log.txt`` (a Ray worker's output goes to
    Ray's log; the run directory then holds the same files as a local run's).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():  # a cluster node that does not share the run directories: say so, create nothing
        print(f"job {job_id}: the run directory {run_dir} cannot be seen from this machine ({socket.gethostname()}); "
              "run directories must be on storage that every machine running jobs shares, at the same path "
              "(README, 'Training on a Ray cluster').", flush=True)
        return 1
    lease = reports.read_lease(run_dir)
    if lease is None or not lease.held_by(job_id, attempt):  # checked before anything is written, the log too
        print(f"job {job_id}: attempt {attempt} does not hold the run's lease (the job was given up or claimed "
              "again); nothing to do", flush=True)
        return 1
    log_file = None
    if tee:
        try:
            log_file = open(rundir.log_path(run_dir), "a")
        except OSError:
            pass  # the run directory's problem shows when the worker first reports
    if log_file is None:
        return _work(job_id, run_dir, attempt, lease)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(saved[0], log_file), _Tee(saved[1], log_file)
    try:
        return _work(job_id, run_dir, attempt, lease)
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


#: Lease reads in a row that may fail (a network file system's hiccup) before the lease counts as lost.
UNREADABLE_LIMIT = 3


def _work(job_id: int, run_dir: Path, attempt: int, lease: reports.Lease) -> int:
    report = reports.Report(job_id, attempt, os.getpid(), socket.gethostname(), device_name(),
                            epoch=rundir.read_state(run_dir).epoch if lease.resume else 0,
                            total_epochs=lease.total_epochs)
    guard = threading.Lock()  # the heartbeat thread and the training loop both report
    cancel, done, lost = threading.Event(), threading.Event(), threading.Event()

    def send(**changes):
        with guard:
            for key, value in changes.items():
                setattr(report, key, value)
            report.beat += 1
            reports.write_report(run_dir, report)

    unreadable = [0]

    def check_lease(patient: bool = False):
        """Lost: the lease names another attempt, is revoked, or could not be read UNREADABLE_LIMIT
        times in a row (``patient``: try that many times now, a second apart)."""
        now = reports.read_lease(run_dir)
        while now is None and patient and unreadable[0] < UNREADABLE_LIMIT - 1:
            unreadable[0] += 1
            time.sleep(1)
            now = reports.read_lease(run_dir)
        if now is None:
            unreadable[0] += 1
            if unreadable[0] >= UNREADABLE_LIMIT:
                lost.set()
                cancel.set()
            return
        unreadable[0] = 0
        if not now.held_by(job_id, attempt):
            lost.set()
            cancel.set()
        elif now.cancel:
            cancel.set()

    def heartbeat():
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                send()
            except OSError as exc:
                print(f"heartbeat not recorded: {exc}", flush=True)
            check_lease()
            if lost.is_set():
                return

    def on_batch(epoch, step, steps):
        with guard:
            report.step, report.steps = step, steps

    def before_commit(epoch):
        check_lease(patient=True)
        if lost.is_set():
            raise LeaseLost(job_id, attempt)

    def on_epoch(epoch, total, row):
        send(epoch=epoch, total_epochs=total, metrics=row, step=0)

    status, error = JobStatus.FAILED, None
    try:
        send()  # the first heartbeat: started
    except OSError as exc:
        print(f"job {job_id}: cannot write to the run directory {run_dir}: {exc}", flush=True)
        return 1
    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    try:
        resume = lease.resume and rundir.has_started(run_dir)
        cfg = None if resume else TrainConfig.parse(lease.config)
        print(f"job {job_id}: {'resuming' if resume else 'starting'} {lease.config.get('arch')} in {run_dir} "
              f"(attempt {attempt}); {device_line()}", flush=True)
        train(cfg, run_dir, resume=resume, epochs=lease.total_epochs if resume else None, on_epoch=on_epoch,
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
        return 1
    print(f"job {job_id}: {status.value}" + (f": {error}" if error else ""), flush=True)
    try:
        send(status=status.value, error=error, step=0)
    except OSError as exc:
        print(f"job {job_id}: could not report the end of the job: {exc}", flush=True)
        if lease.runner != LOCAL:  # the scheduler will find the worker gone and the job interrupted
            return 1
        try:  # on the app's machine: a full or read-only disk still gets its sentence in the store
            with JobStore() as store:
                store.finish(job_id, status, error, attempt)
        except FerError:
            return 1
    if lease.runner == LOCAL:  # on the app's machine: record the end and start the next queued job now,
        try:                   # even when no page is open (a cluster's jobs wait for the app to look)
            schedule()
        except FerError as exc:
            print(f"job {job_id}: the next queued job was not started: {exc}", flush=True)
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
