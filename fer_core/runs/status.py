"""One status vocabulary: a job's, a run's, and what the pages show of the two.

- A **job's** status (:class:`JobStatus`, queued to interrupted) is the job store's
  (:mod:`fer_core.jobs.store`) and its worker's report's (:mod:`fer_core.jobs.reports`).
- A **run's** status (:class:`RunStatus`) is what training last wrote in its ``run.json``
  (running, stopped, finished); a run directory that says none is ``new``, and one that cannot be
  read is ``broken`` (the catalog's words for it, never written).
- Where a run has a job, the job's status is the truer one: a worker killed while training
  leaves ``run.json`` saying running while its job is interrupted. :func:`shown_status` is the
  one place that decides what a page shows.

The values are the strings written to disk (the store, ``run.json``, reports) and shown.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status in the job store and in its worker's report."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


#: A job waiting for a slot or running: it changes by itself.
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
#: Statuses a job never leaves by itself (only a resume starts it again).
ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED})


class RunStatus(StrEnum):
    """A run directory's status: ``run.json``'s ``status`` as training writes it, or the catalog's
    word for a run that says none (``new``) or cannot be read (``broken``)."""

    RUNNING = "running"  # training, or killed while training (a job's ``interrupted``)
    STOPPED = "stopped"  # ended before its last epoch (a cancel, a time limit); resumable
    FINISHED = "finished"  # every epoch done and the final model written
    NEW = "new"  # no status yet: never trained (not written)
    BROKEN = "broken"  # unreadable, or a status that is not one of these (not written)


def run_status(info: dict, readable: bool = True) -> RunStatus:
    """The status of a run from its ``run.json`` (as ``rundir.read_info`` returns it); ``readable``:
    False when the run directory could not be read."""
    if not readable:
        return RunStatus.BROKEN
    try:
        return RunStatus(info.get("status", RunStatus.NEW))
    except (ValueError, TypeError):
        return RunStatus.BROKEN


def shown_status(run: RunStatus | None, job: JobStatus | None) -> str:
    """What a page shows of a run and the job that writes it (either may be None): the job's
    status when there is a job, else the run's ('' for neither)."""
    return str(job or run or "")
