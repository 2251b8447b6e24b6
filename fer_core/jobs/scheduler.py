"""Scheduling: the one place that turns what workers say into the store's state, and starts jobs.

:func:`schedule`, for each runner (this machine, and the Ray cluster when one is set), takes the
workers' reports from their run directories into the store (:mod:`.reports`: progress,
heartbeats, how they ended, and passes cancel requests on), marks dead or silent workers
``interrupted`` (revoking their lease and stopping a silent one), drops cancelled jobs that never
started on the cluster, and starts queued jobs, oldest first, while the runner has free slots.

It runs in three places only: the full server's scheduling loop (:func:`start_scheduling_loop`,
a thread of its own), the commands that change jobs (submit, resume, cancel, delete: the CLI's
and the pages'), and a local worker that has ended (to start the next job, even with no server).
A read (:func:`open_store`: the Train page's job list, the Runs page, ``jobs list``) only reads:
it never reaps, starts a process or calls the cluster. A cluster's workers never schedule (they
never open the store): their results wait in their run directories until the app looks again.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fer_core.config import check_writable, env_text, load_settings, read_only, save_settings
from fer_core.errors import ConfigError, FerError, JobError
from fer_core.jobs import reports
from fer_core.jobs.limits import Limits
from fer_core.jobs.liveness import stale_seconds
from fer_core.jobs.ray_runner import check_address, for_address
from fer_core.jobs.runners import LocalRunner, Runner
from fer_core.jobs.sqlite import store_path
from fer_core.jobs.store import LOCAL, Job, JobStore
from fer_core.runs import rundir
from fer_core.runs.status import JobStatus
from fer_core.runs.trainconfig import TrainConfig

RUNNERS = (LOCAL, "ray")


def ray_runner():
    """The Ray runner for the configured address (``FER_RAY_ADDRESS`` or the setting), or None:
    one per address for the life of the process (see :func:`.ray_runner.for_address`)."""
    address = load_settings().active_ray_address()
    if not address:
        return None
    return for_address(address)  # Ray's own client is imported only when first used


def ray_address_setting() -> tuple[str, bool]:
    """``(address, from_environment)``: the Ray cluster in use and whether ``FER_RAY_ADDRESS`` set it."""
    settings = load_settings()
    return settings.active_ray_address(), bool(env_text("FER_RAY_ADDRESS"))


def save_ray_address(text: str) -> str:
    """Check and save the app's Ray cluster address ('' for none: jobs run on this machine).

    Raises:
        ConfigError: not a dashboard address (``http://HOST:PORT``).
    """
    value = check_address(text) if text.strip() else ""
    settings = load_settings()
    settings.ray_address = value
    save_settings(settings)
    return value


def default_runner_name() -> str:
    """Where new jobs go when not told: the Ray cluster when one is set, else this machine."""
    return "ray" if load_settings().active_ray_address() else LOCAL


def get_runner(name: str) -> Runner:
    """The runner called ``name``.

    Raises:
        ConfigError: an unknown name, or ``ray`` with no cluster address set.
    """
    if name == LOCAL:
        return LocalRunner()
    if name == "ray":
        runner = ray_runner()
        if runner is None:
            raise ConfigError("No Ray cluster is set: set FER_RAY_ADDRESS=http://HOST:8265 (the dashboard's address) "
                              "or enter it on the Train page, or run the job here with --runner local.",
                              field="runner")
        return runner
    raise ConfigError(f"{name!r} is not a runner; choose one of {', '.join(RUNNERS)}.", field="runner")


def schedule(store: JobStore | None = None, runner: Runner | None = None) -> list[int]:
    """Mark dead workers interrupted, then start queued jobs while slots are free; return the started ids.

    ``runner``: schedule only that one (tests); by default this machine's and, when a cluster is
    set, Ray's. A cluster that cannot be reached starts nothing and loses no job: its workers
    are judged by their heartbeats alone.
    """
    if store is None:
        with JobStore() as own:
            return schedule(own, runner)
    started = []
    for each in [runner] if runner is not None else _configured_runners():
        started += _schedule_one(store, each)
    return started


def _configured_runners() -> list[Runner]:
    runners: list[Runner] = [LocalRunner()]
    try:
        ray = ray_runner()
    except ConfigError:
        ray = None  # a bad saved address: the Train page says so where it is set
    if ray is not None:
        runners.append(ray)
    return runners


def ingest(store: JobStore, job: Job, runner: Runner | None = None) -> None:
    """Take a running job's report into the store, pass a cancel request on to its worker and,
    once ``runner`` knows it, record the node the job runs on."""
    report = reports.read_report(job.run_dir, job.id, job.attempt)
    if report is not None:
        store.observe(report)
    if job.cancel_requested:
        reports.update_lease(job.run_dir, job.id, job.attempt, cancel=True)
    if not job.node_id and runner is not None:
        node = runner.node(job)
        if node:
            store.set_node(job.id, job.attempt, node)


def _schedule_one(store: JobStore, runner: Runner) -> list[int]:
    name = runner.name
    for job in store.list(JobStatus.RUNNING):
        if job.runner == name:
            ingest(store, job, runner)

    def alive(job: Job) -> bool | None:
        state = runner.alive(job)
        if state is False:  # gone: its last report may have landed since it was read above
            ingest(store, job)
        return state

    store.reap(alive, runner.stop, name, runner.explain)
    for job in store.list(JobStatus.RUNNING):  # cancelled while still waiting on the cluster: no worker will hear it
        if job.runner == name and job.cancel_requested and runner.alive(job) is None:
            runner.stop(job)
            if store.finish(job.id, JobStatus.CANCELLED, attempt=job.attempt):
                reports.update_lease(job.run_dir, job.id, job.attempt, revoked=True)
    started = []
    for job in store.claim(runner.slots(), name):
        try:
            reports.grant(job.run_dir, reports.Lease(job.id, job.attempt, name, job.config, job.resume,
                                                     job.total_epochs))
            handle = runner.start(job)
        except (OSError, FerError) as exc:
            store.finish(job.id, JobStatus.FAILED, f"Could not start the worker: {exc}", job.attempt)
            reports.update_lease(job.run_dir, job.id, job.attempt, revoked=True)  # if it started after all
            continue
        if isinstance(handle, str):
            store.set_submission(job.id, handle, job.attempt)
        else:
            store.set_pid(job.id, handle)
        started.append(job.id)
    return started


@contextmanager
def open_store() -> Iterator[JobStore]:
    """Open the store, hand it over, close it: a read, which schedules nothing (see the module's
    docstring). ``with open_store() as store: store.list()``.

    Raises:
        JobError: the store cannot be opened (a message naming the file and the way out).
    """
    with JobStore() as store:
        yield store


@contextmanager
def scheduled_store(runner: Runner | None = None) -> Iterator[JobStore]:
    """Open the store, bring it up to date (:func:`schedule`: dead workers noticed, queued jobs started), hand it
    over, close it: for the commands that change jobs, so that they act on the jobs as they are now
    (``with scheduled_store() as store: store.cancel(3)``). Reads use :func:`open_store`.

    Raises:
        JobError: the store cannot be opened (a message naming the file and the way out).
    """
    with JobStore() as store:
        if not read_only():  # a read-only server only looks: the full server (or CLI) schedules
            schedule(store, runner)
        yield store


#: Seconds between two passes of the full server's scheduling loop (a worker beats every 2 s).
LOOP_SECONDS = 2.0


class SchedulingLoop(threading.Thread):
    """A thread that runs :func:`schedule` over one store every ``interval`` seconds until stopped.

    It ends by itself on a read-only server and when the process's store is another file (a
    server's never changes; a test's data folder does). A failed pass (a damaged or locked store,
    a cluster's error) is said once and tried again at the next."""

    def __init__(self, path: Path, interval: float):
        super().__init__(name="job-scheduling", daemon=True)
        self.path, self.interval = path, interval
        self.stopping = threading.Event()
        self.last_error = ""

    def serves(self, path: Path) -> bool:
        return self.is_alive() and not self.stopping.is_set() and self.path == path

    def run(self) -> None:
        while True:
            try:
                if read_only() or store_path() != self.path:
                    return
                with JobStore(self.path) as store:
                    if store.count_waiting():  # an idle queue costs one query a pass
                        schedule(store)
                self.last_error = ""
            except Exception as exc:  # the loop outlives any one bad pass
                if str(exc) != self.last_error:
                    print(f"job scheduling: {exc} (tried again every {self.interval:g} s)", flush=True)
                self.last_error = str(exc)
            if self.stopping.wait(self.interval):
                return


_loop_guard = threading.Lock()
_loop: SchedulingLoop | None = None


def start_scheduling_loop(interval: float = LOOP_SECONDS) -> SchedulingLoop | None:
    """Start this process's scheduling loop (:class:`SchedulingLoop`) unless it runs already:
    idempotent, one per process (the full server's), never on a read-only server. Returns the
    loop that runs now (None on a read-only server)."""
    global _loop
    if read_only():
        return None
    path = store_path()
    with _loop_guard:
        if _loop is None or not _loop.serves(path):
            if _loop is not None:
                _loop.stopping.set()  # it served another store
            _loop = SchedulingLoop(path, interval)
            _loop.start()
        return _loop


def not_current(listed: list[Job], now: float | None = None) -> str | None:
    """What a plain look at the store (which schedules nothing) should add when no scheduler seems
    to keep it current: running jobs whose progress was last taken in over the stale limit, or a
    queue with nothing running; else None."""
    now = time.time() if now is None else now
    running = [j for j in listed if j.status == JobStatus.RUNNING]
    old = sorted(j.id for j in running if (j.heartbeat or 0) < now - stale_seconds())
    queued = [j.id for j in listed if j.status == JobStatus.QUEUED]
    if not old and not (queued and not running):
        return None
    what = (f"job(s) {', '.join(map(str, old))} last reported over {stale_seconds():.0f} s ago" if old
            else f"{len(queued)} job(s) queued and none running")
    return (f"note: {what}: this list is as last scheduled. A full server schedules every {LOOP_SECONDS:g} s; "
            "without one, run 'python -m fer_core jobs schedule' to take the workers' progress, give up dead "
            "ones and start queued jobs.")


def stop_scheduling_loop(timeout: float = 60.0) -> None:
    """Stop this process's scheduling loop, if one runs, and wait for its pass to end."""
    global _loop
    with _loop_guard:
        loop, _loop = _loop, None
    if loop is not None:
        loop.stopping.set()
        loop.join(timeout)


def submit(cfg: TrainConfig, store: JobStore | None = None, runner: Runner | None = None, name: str = "",
           note: str = "", tags: tuple[str, ...] | list[str] = (), where: str | None = None,
           limits: Limits | None = None, mine: list[int] | None = None) -> int:
    """Queue a job and start it if a slot is free; return its id.

    ``where``: the runner's name (``local`` or ``ray``; default: Ray when a cluster is set).
    ``limits``: what may be queued (default: what the environment sets, see
    :mod:`fer_core.jobs.limits`); ``mine``: the ids of the jobs the same browser session
    submitted, for its per-session share. ``cfg`` is checked where it was entered (see
    :mod:`fer_core.training.validation`), not here.
    """
    check_writable("Submitting a training job")
    if store is None:
        with JobStore() as own:
            return submit(cfg, own, runner, name, note, tags, where, limits, mine)
    limits = limits or Limits.from_env()
    limits.check_epochs(cfg.epochs)
    if mine is not None:
        limits.check_session(store.count_waiting(mine))
    where = where or (runner.name if runner is not None else default_runner_name())
    if runner is None:
        get_runner(where)  # a Ray job needs a cluster address before it is queued
    job_id = store.submit(cfg, name=name, note=note, tags=tags, runner=where, max_waiting=limits.queued)
    schedule(store, runner)
    return job_id


def job_log(job, tail: int = 20_000) -> str:
    """A job's output: from Ray for a job that ran there, else the run's log file."""
    if job.runner == "ray" and job.submission:
        try:
            runner = get_runner("ray")
            return runner.logs(job, tail)
        except (ConfigError, JobError) as exc:
            return f"({exc} The run's own log file follows.)\n" + rundir.read_log(job.run_dir, tail)
    return rundir.read_log(job.run_dir, tail)


def cluster_view() -> dict:
    """Where jobs run now: the runner, its CPUs and GPUs (total and free) and jobs per node.

    Raises:
        JobError: the Ray cluster that is set cannot be reached.
    """
    runner = ray_runner()
    if runner is not None:
        return runner.cluster()
    local = LocalRunner()
    with JobStore() as store:
        running = sum(1 for j in store.list(JobStatus.RUNNING) if j.runner == LOCAL)
    return {"runner": LOCAL, "address": "", "loopback": True, "nodes": 1, "cpus": float(os.cpu_count() or 1),
            "gpus": float(local.gpus), "slots": len(local.slots()), "running": running,
            "jobs_per_node": {"this machine": running} if running else {}}
