"""The job store: one SQLite file (``data/jobs.sqlite3``) on the app's machine.

Only processes on that machine open it (the Streamlit server, the CLI, and a local worker when
it ends, to start the next job); WAL mode lets them use it at the same time. Workers report
through their run directory instead (:mod:`fer_core.jobs.reports`), which the scheduler reads
into the store. Each claim of a job starts a new **attempt** (a lease with a fencing token):
a report counts only while the row still carries its attempt number, and a revoked lease stops
its worker, so a worker that was declared dead and replaced can never write over its successor.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from fer_core.config import runs_dir
from fer_core.errors import FerError, JobError
from fer_core.jobs import reports
from fer_core.jobs.liveness import start_seconds, stale_seconds
from fer_core.jobs.sqlite import connect, explain_sqlite, store_path, transaction
from fer_core.runs import removal, rundir
from fer_core.runs.status import JobStatus
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.validation import clean_tags

LOCAL = "local"


class LeaseLost(JobError):
    """A worker's attempt no longer holds its job: it must stop without writing anything more."""

    def __init__(self, job_id: int, attempt: int):
        super().__init__(f"Job {job_id}: attempt {attempt} lost its lease (declared dead and reclaimed); "
                         "this worker stops without writing.")


#: The ended statuses a resume queues again (a succeeded job only with more epochs).
RESUMABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED})


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
    attempt: int = 0
    runner: str = LOCAL
    submission: str | None = None  # the cluster's id of the current attempt (Ray's submission id)
    sweep: int | None = None
    node_id: str | None = None  # where the current attempt runs: Ray's node id, or the host
    beat: int = 0  # the last beat counter seen in the worker's report

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
        """Seconds left, from the last epoch's duration; during the first epoch, from the batches
        done since the job started (None until there is either)."""
        if self.status != JobStatus.RUNNING:
            return None
        per_epoch = self.metrics.get("epoch_seconds")
        if not per_epoch and self.steps and self.step and self.started:
            per_epoch = (time.time() - self.started) / self.step * self.steps  # start-up included: an upper bound
        if not per_epoch:
            return None
        left = self.total_epochs - self.epoch - (self.step / self.steps if self.steps else 0)
        return max(left, 0.0) * per_epoch

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["status"] = self.status.value
        out.update(progress=round(self.progress, 4), elapsed=self.elapsed, eta=self.eta)
        return out


def queue_full_message(waiting: int, limit: int, adding: int = 1) -> str:
    """The refusal when the queue holds ``waiting`` jobs, ``adding`` more were asked for and the
    server allows ``limit`` (FER_MAX_QUEUED)."""
    what = "" if adding == 1 else f"; these {adding} jobs would make {waiting + adding}"
    return (f"The job queue is full: {waiting} job(s) are waiting or running{what} and this server allows {limit} "
            "(FER_MAX_QUEUED). Wait for some to finish, or cancel or delete one of yours, then submit again.")


def _mark_request(run_dir: str | Path, cancelled: bool) -> None:
    """Record in a waiting job's request (``run.json``'s ``queued``) whether it was cancelled, for
    ``jobs repair``; a run that started has no request left, and nothing is written then."""
    try:
        request = rundir.read_info(run_dir).get(rundir.QUEUED)
        if isinstance(request, dict) and request.get("cancelled", False) != cancelled:
            rundir.update_info(run_dir, **{rundir.QUEUED: {**request, "cancelled": cancelled}})
    except (FerError, OSError):
        pass  # only jobs repair reads it; the store holds the truth


class JobStore:
    """Every read and state change of the job table."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else store_path()
        self.conn = connect(self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- reading
    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Run a read; a damaged or unreadable file is a JobError that names it and the way back."""
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise JobError(f"The job store {self.path} cannot be read: {explain_sqlite(exc)}.") from None

    def get(self, job_id: int) -> Job:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
        row = rows[0] if rows else None
        if row is None:
            raise JobError(f"There is no job {job_id}; 'python -m fer_core jobs list' shows them.")
        return Job.from_row(row)

    def list(self, status: JobStatus | None = None, sweep: int | None = None) -> list[Job]:
        """All jobs, newest first (optionally of one status, of one sweep)."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(JobStatus(status).value)
        if sweep is not None:
            where.append("sweep = ?")
            args.append(int(sweep))
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        return [Job.from_row(r) for r in self._rows(sql, tuple(args))]

    def new_sweep(self, spec: dict) -> int:
        """Record a sweep (its grid, as given) and return its id; its jobs name it in ``sweep``."""
        with transaction(self.conn, self.path) as c:
            return int(c.execute("INSERT INTO sweeps (created, spec) VALUES (?, ?)", (time.time(), json.dumps(spec))).lastrowid)

    def sweep_spec(self, sweep: int) -> dict:
        """A sweep's grid as recorded.

        Raises:
            JobError: there is no such sweep.
        """
        rows = self._rows("SELECT spec FROM sweeps WHERE id = ?", (int(sweep),))
        if not rows:
            raise JobError(f"There is no sweep {sweep}; 'python -m fer_core jobs list' shows each job's sweep.")
        return json.loads(rows[0]["spec"])

    # ----------------------------------------------------------------- changes
    def submit(self, cfg: TrainConfig, run_dir: str | Path | None = None, name: str = "", note: str = "",
               tags: tuple[str, ...] | list[str] = (), sweep: int | None = None, runner: str = LOCAL,
               sweep_config: str = "", max_waiting: int | None = None) -> int:
        """Queue a training job (``cfg`` as checked where it was entered, see :mod:`fer_core.training.validation`).

        Its run directory is created now so its log has a home, and removed again if the job
        cannot be recorded. The run's ``run.json`` names the job (and holds ``note``), so a run
        leads back to its job as the job leads to its run; ``tags``, ``sweep`` and
        ``sweep_config`` (the configuration's label within its sweep, seeds aside) group runs on
        the Runs page. ``runner`` says where it runs (``local`` or ``ray``). ``max_waiting``: refuse
        (JobError) when that many jobs are already queued or running, counted in the same
        transaction as the insert.
        """
        return self.submit_many([{"cfg": cfg, "run_dir": run_dir, "name": name, "sweep_config": sweep_config}],
                                note, tags, sweep, runner, max_waiting)[0]

    def submit_many(self, jobs: list[dict], note: str = "", tags: tuple[str, ...] | list[str] = (),
                    sweep: int | None = None, runner: str = LOCAL, max_waiting: int | None = None) -> list[int]:
        """Queue several jobs (``{"cfg", "run_dir", "name", "sweep_config"}`` each) in one
        transaction: all of them or none (a sweep racing another submission never ends half
        queued). See :meth:`submit` for the rest."""
        items = [(j["cfg"], j.get("run_dir"), j.get("name", ""), j.get("sweep_config", ""))
                 for j in jobs]
        tags, made, ids = clean_tags(tags), [], []
        try:
            paths = []
            for cfg, run_dir, name, _ in items:
                path = Path(run_dir) if run_dir else rundir.new_run_dir(cfg.arch, name)
                if not run_dir:
                    made.append(path)
                path.mkdir(parents=True, exist_ok=True)
                paths.append(path)
            with transaction(self.conn, self.path) as c:
                if max_waiting is not None and self.count_waiting() + len(items) > max_waiting:
                    raise JobError(queue_full_message(self.count_waiting(), max_waiting, len(items)))
                for (cfg, _, _, label), path in zip(items, paths):
                    cur = c.execute("INSERT INTO jobs (config, status, created, run_dir, total_epochs, runner, sweep)"
                                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (json.dumps(cfg.to_dict()), JobStatus.QUEUED.value,
                                                                     time.time(), str(path), cfg.epochs, runner, sweep))
                    ids.append(int(cur.lastrowid))
                    labels = {rundir.JOB: ids[-1], rundir.NOTE: note.strip(), rundir.TAGS: tags, rundir.SWEEP: sweep,
                              rundir.SWEEP_CONFIG: label, rundir.QUEUED: {"config": cfg.to_dict(), "runner": runner}}
                    rundir.update_info(path, **{k: v for k, v in labels.items() if v})
            return ids
        except BaseException:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            raise

    def count_waiting(self, ids: list[int] | None = None) -> int:
        """Jobs queued or running (of ``ids`` only, when given)."""
        rows = self._rows("SELECT id FROM jobs WHERE status IN (?, ?)", (JobStatus.QUEUED.value, JobStatus.RUNNING.value))
        return sum(1 for r in rows if ids is None or r["id"] in ids)

    def claim(self, slots: list[int], runner: str = LOCAL) -> list[Job]:
        """Mark the oldest queued jobs of ``runner`` running, one per free slot of that runner,
        atomically; return them."""
        with transaction(self.conn, self.path) as c:
            used = {r["slot"] for r in c.execute("SELECT slot FROM jobs WHERE status = ? AND runner = ?",
                                                 (JobStatus.RUNNING.value, runner))}
            free = [s for s in slots if s not in used]
            queued = c.execute("SELECT id FROM jobs WHERE status = ? AND runner = ? ORDER BY id LIMIT ?",
                               (JobStatus.QUEUED.value, runner, len(free))).fetchall()
            now = time.time()
            for slot, row in zip(free, queued):
                c.execute("UPDATE jobs SET status = ?, slot = ?, pid = NULL, submission = NULL, started = ?,"
                          " finished = NULL, heartbeat = ?, step = 0, steps = 0, cancel_requested = 0, error = NULL,"
                          " node_id = NULL, beat = 0, attempt = attempt + 1 WHERE id = ?",
                          (JobStatus.RUNNING.value, slot, now, now, row["id"]))
            ids = [row["id"] for row in queued]
        return [self.get(i) for i in ids]

    def set_pid(self, job_id: int, pid: int) -> None:
        """Record a local worker's pid as its runner started it."""
        with transaction(self.conn, self.path) as c:
            c.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def set_submission(self, job_id: int, submission: str, attempt: int) -> bool:
        """Record the cluster's id of a job's attempt; False when ``attempt`` no longer holds the job."""
        with transaction(self.conn, self.path) as c:
            cur = c.execute("UPDATE jobs SET submission = ?, heartbeat = ? WHERE id = ? AND attempt = ? AND status = ?",
                            (submission, time.time(), job_id, attempt, JobStatus.RUNNING.value))
        return cur.rowcount == 1

    def set_node(self, job_id: int, attempt: int, node_id: str) -> None:
        """Record where the job's current attempt runs (Ray's node id, or the host)."""
        with transaction(self.conn, self.path) as c:
            c.execute("UPDATE jobs SET node_id = ? WHERE id = ? AND attempt = ?", (node_id, job_id, attempt))

    def observe(self, report: reports.Report) -> bool:
        """Take a worker's report into the row, if its attempt still holds the job: progress,
        pid and device, the heartbeat (now, when the beat counter moved) and, once the worker
        has ended, its status. Returns whether the report counted."""
        with transaction(self.conn, self.path) as c:
            row = c.execute("SELECT beat FROM jobs WHERE id = ? AND attempt = ? AND status = ?",
                            (report.job, report.attempt, JobStatus.RUNNING.value)).fetchone()
            if row is None:
                return False
            if report.beat < row["beat"]:  # read before a newer one that another look already took
                return False
            moved = report.beat > row["beat"]
            c.execute("UPDATE jobs SET pid = ?, device = ?, beat = ?, step = ?, steps = ?, heartbeat = CASE WHEN ?"
                      " THEN ? ELSE heartbeat END WHERE id = ?",
                      (report.pid, report.device or None, report.beat, report.step, report.steps, moved, time.time(),
                       report.job))
            if report.epoch:
                c.execute("UPDATE jobs SET epoch = ?, total_epochs = ?, metrics = ? WHERE id = ?",
                          (report.epoch, report.total_epochs, json.dumps(report.metrics), report.job))
            if report.ended:
                c.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, step = 0 WHERE id = ?",
                          (JobStatus(report.status).value, report.error, time.time(), report.job))
        return True

    def finish(self, job_id: int, status: JobStatus, error: str | None = None, attempt: int | None = None) -> bool:
        """Record how a worker ended; False when ``attempt`` no longer holds the job (nothing written)."""
        with transaction(self.conn, self.path) as c:
            cur = c.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, step = 0 WHERE id = ? AND status = ?"
                            " AND (? IS NULL OR attempt = ?)",
                            (JobStatus(status).value, error, time.time(), job_id, JobStatus.RUNNING.value,
                             attempt, attempt))
        return cur.rowcount == 1

    def cancel(self, job_id: int) -> JobStatus:
        """Cancel a queued job at once, or ask a running one to stop at its next batch."""
        with transaction(self.conn, self.path) as c:
            job = self.get(job_id)
            if job.status == JobStatus.QUEUED:
                c.execute("UPDATE jobs SET status = ?, finished = ? WHERE id = ?",
                          (JobStatus.CANCELLED.value, time.time(), job_id))
                _mark_request(job.run_dir, cancelled=True)  # jobs repair must not queue it again
                return JobStatus.CANCELLED
            if job.status == JobStatus.RUNNING:
                c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        if job.status == JobStatus.RUNNING:  # the worker reads it from its lease at its next heartbeat
            reports.update_lease(job.run_dir, job.id, job.attempt, cancel=True)
            return JobStatus.RUNNING
        raise JobError(f"Job {job_id} is {job.status.value}; only queued or running jobs can be cancelled.")

    def resume(self, job_id: int, epochs: int | None = None, max_waiting: int | None = None) -> None:
        """Queue a cancelled, failed or interrupted job again; it continues from its last checkpoint.

        ``epochs``: extend the run to that many epochs in all (also a succeeded job); see
        :func:`fer_core.training.trainer.extend` for the schedule.

        Raises:
            JobError: the job cannot be resumed, or ``epochs`` is not more than the epochs done.
        """
        with transaction(self.conn, self.path) as c:
            job = self.get(job_id)
            resumable = RESUMABLE | ({JobStatus.SUCCEEDED} if epochs is not None else set())
            if job.status not in resumable:
                raise JobError(f"Job {job_id} is {job.status.value}; only cancelled, failed or interrupted jobs "
                               "can be resumed (a succeeded one only with more epochs).")
            config, total = job.config, job.total_epochs
            if epochs is not None:
                problem = rundir.extension_problem(job.run_dir, epochs)
                if problem:
                    raise JobError(f"Job {job_id}: {problem}.")
                config, total = {**job.config, "epochs": epochs}, epochs
            if max_waiting is not None and self.count_waiting() >= max_waiting:
                raise JobError(queue_full_message(self.count_waiting(), max_waiting))
            c.execute("UPDATE jobs SET status = ?, resume = 1, error = NULL, finished = NULL, cancel_requested = 0,"
                      " pid = NULL, config = ?, total_epochs = ? WHERE id = ?",
                      (JobStatus.QUEUED.value, json.dumps(config), total, job_id))
            _mark_request(job.run_dir, cancelled=False)

    def delete(self, job_id: int, remove_files: bool = True) -> list[str]:
        """Forget a job that is not running and remove what its training wrote.

        Only a run directory under ``data/runs`` is touched, and in it only the run's own files
        (:func:`fer_core.runs.removal.remove_run`): returns the names of anything else found there,
        which is kept with its folder.
        """
        with transaction(self.conn, self.path) as c:
            job = self.get(job_id)
            if job.status == JobStatus.RUNNING:
                raise JobError(f"Job {job_id} is running; cancel it first, then delete it.")
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        run = Path(job.run_dir)
        inside = run.resolve().is_relative_to(runs_dir().resolve()) and run.resolve() != runs_dir().resolve()
        if remove_files and inside and run.is_dir() and (rundir.is_run(run) or (run / rundir.INFO).is_file()):
            return removal.remove_run(run)
        return []

    def reap(self, alive, stop=None, runner: str = LOCAL, explain=None) -> list[int]:
        """Mark running jobs of ``runner`` whose worker is gone (dead or stale heartbeat) ``interrupted``.

        ``alive(job)`` is the runner's word: True (running), False (gone) or None (not started
        yet: waiting on the cluster, so its silence means nothing). A worker that is silent but
        still alive (stopped, hung, a laptop lid closed) loses its lease here: the attempt number
        fences it off, and ``stop(job)`` (the runner's) ends it. ``explain(job)``: what the
        runner knows of a dead worker's end, added to the job's error.
        """
        now, stale, starting = time.time(), stale_seconds(), start_seconds()
        gone = []
        for job in self.list(JobStatus.RUNNING):
            if job.runner != runner:
                continue
            state = alive(job)
            if state is None:
                continue
            dead = not state
            limit = stale if job.steps else starting  # no batch reported yet: still starting (slow, not hung)
            if not dead and (job.heartbeat or 0) >= now - limit:
                continue
            silent = "(hung, stopped or asleep)" if job.steps else "while starting (hung before its first batch)"
            why = ("The worker process stopped without a word (killed, out of memory or machine restart)."
                   if dead else f"The worker sent no heartbeat for {limit:.0f} s {silent}; it was stopped so that "
                                "it can never write this run again.")
            said = explain(job) if dead and explain is not None else ""
            why += f" {said}" if said else ""
            # a live worker must stop writing before its job can be given up (and resumed): a
            # lease that cannot be revoked now keeps the job running until a later look can
            if not reports.update_lease(job.run_dir, job.id, job.attempt, revoked=True) and not dead:
                continue
            with transaction(self.conn, self.path) as c:
                cur = c.execute("UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ? AND status = ?"
                                " AND attempt = ?",
                                (JobStatus.INTERRUPTED.value, now, why + " Resume the job to continue from its last "
                                 "checkpoint.", job.id, JobStatus.RUNNING.value, job.attempt))
            if cur.rowcount == 1:
                gone.append(job.id)
                if not dead and stop is not None:
                    stop(job)
        return gone
