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
from fer_core.jobs.store import LOCAL, JobStore, LeaseLost
from fer_core.runs import rundir
from fer_core.runs.status import JobStatus
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


class LeaseWatch:
    """A worker's side of its lease while it trains: its report (sent on every heartbeat, batch
    count and epoch) and the lease, read on every heartbeat and before every commit.

    The heartbeat thread and the training loop share it: ``guard`` orders their reports;
    ``cancel`` tells the training loop to stop at the next batch (a cancel request, or the
    lease lost); ``lost`` says the lease was lost (stop and write nothing more); ``done`` ends
    the heartbeat thread.
    """

    def __init__(self, run_dir: Path, report: reports.Report):
        self.run_dir, self.report = run_dir, report
        self.guard = threading.Lock()
        self.cancel, self.done, self.lost = threading.Event(), threading.Event(), threading.Event()
        self.unreadable = 0  # lease reads failed in a row
        self.thread = threading.Thread(target=self.beat, name="heartbeat", daemon=True)

    def send(self, **changes) -> None:
        """Write the report with ``changes`` and the next beat (OSError: it could not be written)."""
        with self.guard:
            for key, value in changes.items():
                setattr(self.report, key, value)
            self.report.beat += 1
            reports.write_report(self.run_dir, self.report)

    def check_lease(self, patient: bool = False) -> None:
        """Lost: the lease names another attempt, is revoked, or could not be read UNREADABLE_LIMIT
        times in a row (``patient``: try that many times now, a second apart)."""
        now = reports.read_lease(self.run_dir)
        while now is None and patient and self.unreadable < UNREADABLE_LIMIT - 1:
            self.unreadable += 1
            time.sleep(1)
            now = reports.read_lease(self.run_dir)
        if now is None:
            self.unreadable += 1
            if self.unreadable >= UNREADABLE_LIMIT:
                self.lose()
            return
        self.unreadable = 0
        if not now.held_by(self.report.job, self.report.attempt):
            self.lose()
        elif now.cancel:
            self.cancel.set()

    def lose(self) -> None:
        self.lost.set()
        self.cancel.set()

    def beat(self) -> None:
        """The heartbeat thread: a report and a look at the lease every HEARTBEAT_SECONDS."""
        while not self.done.wait(HEARTBEAT_SECONDS):
            try:
                self.send()
            except OSError as exc:
                print(f"heartbeat not recorded: {exc}", flush=True)
            self.check_lease()
            if self.lost.is_set():
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=HEARTBEAT_SECONDS * 2)

    # the training loop's hooks
    def on_batch(self, epoch: int, step: int, steps: int) -> None:
        with self.guard:
            self.report.step, self.report.steps = step, steps

    def on_epoch(self, epoch: int, total: int, row: dict) -> None:
        self.send(epoch=epoch, total_epochs=total, metrics=row, step=0)

    def before_commit(self, epoch: int) -> None:
        self.check_lease(patient=True)
        if self.lost.is_set():
            raise LeaseLost(self.report.job, self.report.attempt)


def _work(job_id: int, run_dir: Path, attempt: int, lease: reports.Lease) -> int:
    report = reports.Report(job_id, attempt, os.getpid(), socket.gethostname(), device_name(),
                            epoch=rundir.read_state(run_dir).epoch if lease.resume else 0,
                            total_epochs=lease.total_epochs)
    watch = LeaseWatch(run_dir, report)
    try:
        watch.send()  # the first heartbeat: started
    except OSError as exc:
        print(f"job {job_id}: cannot write to the run directory {run_dir}: {exc}", flush=True)
        return 1
    watch.start()
    try:
        status, error = _train(job_id, run_dir, attempt, lease, watch)
    finally:
        watch.stop()
    if watch.lost.is_set():
        print(f"job {job_id}: attempt {attempt} lost its lease; stopping without writing", flush=True)
        return 1
    print(f"job {job_id}: {status}" + (f": {error}" if error else ""), flush=True)
    return _finish(job_id, attempt, lease, watch, status, error)


def _train(job_id: int, run_dir: Path, attempt: int, lease: reports.Lease,
           watch: LeaseWatch) -> tuple[JobStatus, str | None]:
    """Train the lease's run; return how it ended and its error (a lost lease sets ``watch.lost``)."""
    try:
        resume = lease.resume and rundir.has_started(run_dir)
        cfg = None if resume else TrainConfig.parse(lease.config)
        print(f"job {job_id}: {'resuming' if resume else 'starting'} {lease.config.get('arch')} in {run_dir} "
              f"(attempt {attempt}); {device_line()}", flush=True)
        train(cfg, run_dir, resume=resume, epochs=lease.total_epochs if resume else None, on_epoch=watch.on_epoch,
              on_batch=watch.on_batch, should_stop=watch.cancel.is_set, before_commit=watch.before_commit, verbose=2)
        finished = rundir.is_finished(rundir.read_info(run_dir))
        return (JobStatus.SUCCEEDED if finished else JobStatus.CANCELLED), None
    except LeaseLost as exc:
        watch.lose()
        return JobStatus.FAILED, str(exc)
    except Exception as exc:  # a failed job must say why, whatever went wrong
        if disk_problem(exc) is None:  # a full or read-only disk needs a sentence, not a traceback
            traceback.print_exc()
        return JobStatus.FAILED, explain(exc)


def _finish(job_id: int, attempt: int, lease: reports.Lease, watch: LeaseWatch, status: JobStatus,
            error: str | None) -> int:
    """Report how the job ended; a local worker then records it in the store if the report could
    not be written, and schedules (the next queued job starts even when no page is open)."""
    try:
        watch.send(status=status, error=error, step=0)
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
