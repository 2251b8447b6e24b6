"""Scheduling without a daemon: every look at the store starts what can start.

Every page refresh, CLI call and ending worker calls :func:`schedule`, which marks dead or
silent workers ``interrupted`` (stopping a silent one) and starts queued jobs, oldest first,
while the runner has free slots.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..trainconfig import TrainConfig
from .runners import LocalRunner, Runner
from .store import JobStatus, JobStore


def schedule(store: JobStore | None = None, runner: Runner | None = None) -> list[int]:
    """Mark dead workers interrupted, then start queued jobs while slots are free; return the started ids."""
    if store is None:
        with JobStore() as own:
            return schedule(own, runner)
    runner = runner or LocalRunner()
    store.reap(runner.alive, runner.stop)
    started = []
    for job in store.claim(runner.slots()):
        try:
            store.set_pid(job.id, runner.start(job))
            started.append(job.id)
        except OSError as exc:
            store.finish(job.id, JobStatus.FAILED, f"Could not start the worker process: {exc}.")
    return started


@contextmanager
def open_store(runner: Runner | None = None) -> Iterator[JobStore]:
    """Open the store, bring it up to date (:func:`schedule`), hand it over, close it.

    The one way pages and the CLI act on jobs: ``with open_store() as store: store.cancel(3)``.

    Raises:
        JobError: the store cannot be opened (a message naming the file and the way out).
    """
    with JobStore() as store:
        schedule(store, runner)
        yield store


def submit(cfg: TrainConfig, store: JobStore | None = None, runner: Runner | None = None, name: str = "",
           note: str = "", tags: tuple[str, ...] | list[str] = ()) -> int:
    """Queue a job and start it if a slot is free; return its id."""
    if store is None:
        with JobStore() as own:
            return submit(cfg, own, runner, name, note, tags)
    job_id = store.submit(cfg, name=name, note=note, tags=tags)
    schedule(store, runner)
    return job_id
