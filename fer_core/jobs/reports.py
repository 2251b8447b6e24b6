"""How a job's worker and the scheduler talk: two files in the run directory, never the store.

The job store is an SQLite file on the app's machine, and only processes there open it: SQLite
over a network file system loses locks and WAL, so a worker on another node must not touch it.
What the two sides need from each other goes through the run directory, which is on storage
both can see, in two files, each written whole and atomically and each carrying the lease
(the job's attempt number):

- ``lease.json``, written by the app's side only: the job, its attempt, what to run (config,
  resume, epochs in all), the runner, and two flags: ``cancel`` (stop at the next batch) and
  ``revoked`` (the attempt was given up: stop and write nothing more). A worker whose attempt
  is not the lease's, or whose lease is revoked, stops without writing.
- ``worker-<attempt>.json``, written by that attempt's worker only: a beat counter, the batch
  and the last committed epoch with its metrics, its pid, host and device, and at the end its
  status and error. Every attempt has its own file, so a stale worker can never overwrite its
  successor's; the scheduler reads only the current attempt's.

The store's ``heartbeat`` is the app's clock when the scheduler last saw the beat counter
change, so clocks on other nodes never matter; the history itself is the run directory's
(:mod:`fer_core.runs.rundir`), which the lease fences in the same way.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

from fer_core import files
from fer_core.config import data_dir
from fer_core.runs import rundir
from fer_core.runs.status import JobStatus

#: How a worker ends: what its last report says (a report's status is the job store's own type).
ENDS = frozenset({JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.FAILED})


@dataclass
class Lease:
    """What the app's side tells the worker of one attempt (``lease.json``)."""

    job: int
    attempt: int
    runner: str
    config: dict
    resume: bool
    total_epochs: int
    cancel: bool = False
    revoked: bool = False

    def held_by(self, job: int, attempt: int) -> bool:
        """True while this lease lets ``attempt`` of ``job`` run and write."""
        return self.job == job and self.attempt == attempt and not self.revoked


@dataclass
class Report:
    """What a worker tells the app's side (``worker-<attempt>.json``)."""

    job: int
    attempt: int
    pid: int
    host: str
    device: str = ""
    beat: int = 0
    step: int = 0
    steps: int = 0
    epoch: int = 0
    total_epochs: int = 0
    metrics: dict = field(default_factory=dict)
    status: JobStatus = JobStatus.RUNNING  # written as its value; an end is one of ENDS
    error: str | None = None

    def __post_init__(self):
        self.status = JobStatus(self.status)  # a file's string (ValueError: not a report of ours)

    @property
    def ended(self) -> bool:
        return self.status in ENDS


def _read(cls, path: Path):
    raw = files.read_json(path)
    names = {f.name for f in fields(cls)}
    if not isinstance(raw, dict) or not names >= set(raw):
        return None
    try:
        return cls(**raw)
    except (TypeError, ValueError):  # a field missing or a status unknown: not a file of ours, or of another version
        return None


@contextmanager
def _leases_locked() -> Iterator[None]:
    """Every change of a lease happens under one lock of the app's machine (a file in its local
    data folder, not on shared storage), so a cancel and a revoke from two sessions never undo
    each other and a late change of attempt N never lands on attempt N+1's lease."""
    fd = os.open(data_dir() / ".leases.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(run_dir: str | Path, lease: Lease) -> None:
    files.write_json(rundir.lease_path(run_dir), asdict(lease))


def grant(run_dir: str | Path, lease: Lease) -> None:
    """Give the run to a new attempt: its lease, and no report of that attempt number yet (a
    rebuilt store, ``jobs repair``, counts attempts from 0 again)."""
    with _leases_locked():
        rundir.report_path(run_dir, lease.attempt).unlink(missing_ok=True)
        _write(run_dir, lease)


def read_lease(run_dir: str | Path) -> Lease | None:
    """The run's lease, or None when there is none (or it cannot be read)."""
    return _read(Lease, rundir.lease_path(run_dir))


def update_lease(run_dir: str | Path, job: int, attempt: int, **flags) -> bool:
    """Set ``cancel`` or ``revoked`` on the lease of ``attempt`` (a file already so is not
    rewritten; a revoked lease stays revoked). True when the lease now says so, or when the run
    holds another attempt's lease or none (nothing is left for ``attempt`` to hold); False when
    the file cannot be read or written, so the caller can try again."""
    try:
        with _leases_locked():
            path = rundir.lease_path(run_dir)
            if not path.exists():
                return Path(run_dir).is_dir()  # no lease at all: nothing to change
            lease = read_lease(run_dir)
            if lease is None:
                return False  # unreadable now
            if (lease.job, lease.attempt) != (job, attempt):
                return True
            if lease.revoked or all(getattr(lease, k) == v for k, v in flags.items()):
                return True
            _write(run_dir, Lease(**{**asdict(lease), **flags}))
    except OSError:
        return False
    return True


def write_report(run_dir: str | Path, report: Report) -> None:
    files.write_json(rundir.report_path(run_dir, report.attempt), asdict(report))


def read_report(run_dir: str | Path, job: int, attempt: int) -> Report | None:
    """The report of ``attempt`` of ``job``, or None when it has not written one yet (or it is
    unreadable, or names another job)."""
    report = _read(Report, rundir.report_path(run_dir, attempt))
    return report if report is not None and (report.job, report.attempt) == (job, attempt) else None
