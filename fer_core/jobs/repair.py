"""``jobs repair``: a damaged job store rebuilt from the run directories.

What each run directory says becomes its job again, under the job's own id (``run.json``'s
``job``) and attempt (its lease's), so the fencing of a live worker still holds:

- a lease that is not revoked, whose worker has not reported an end and is alive on this machine
  (or has not reported yet): **running**, each in a slot of its runner of its own, so no new worker
  starts while they write; the scheduler then follows it as any running job (a silent one is given up);
- a worker that is gone: **interrupted** (its lease revoked first), resumable from its last checkpoint;
- a run that never started but holds its queued request (``run.json``'s ``queued``): **queued**
  (**cancelled** when it was cancelled while it waited);
- a finished run: **succeeded**; any other: **interrupted**.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from fer_core.errors import FerError
from fer_core.jobs import reports
from fer_core.jobs.runners import pid_alive
from fer_core.jobs.sqlite import store_path, transaction
from fer_core.jobs.store import LOCAL, JobStore
from fer_core.runs import rundir
from fer_core.runs.status import JobStatus
from fer_core.runs.trainconfig import TrainConfig

REBUILT = "Rebuilt from its run directory by 'jobs repair'; resume it to continue from its last checkpoint."


def repair(path: str | Path | None = None) -> tuple[Path | None, list[int]]:
    """Rebuild a damaged job store from the run directories; keep the damaged file as a backup.
    Returns ``(backup, job ids)``; backup is None when there was no store file."""
    path = Path(path) if path else store_path()
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(backup)
    for suffix in ("-wal", "-shm"):  # the damaged file's journal must not be replayed into the new one
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(Path(f"{backup or path}{suffix}"))
    rows = [r for r in map(job_row, reversed(rundir.run_dirs(with_queued=True))) if r is not None]  # oldest first
    slots: dict[str, int] = {}
    for row in rows:  # live workers keep distinct slots of their runner, so no new one starts beside them
        if row["status"] == JobStatus.RUNNING.value:
            row["slot"] = slots[row["runner"]] = slots.get(row["runner"], -1) + 1
    ids = []
    with JobStore(path) as store:  # the jobs' own ids first, then new ids for runs that had none
        for row in sorted(rows, key=lambda r: r["id"] is None):
            with transaction(store.conn, store.path) as c:
                taken = row["id"] is not None and c.execute("SELECT 1 FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                if taken:
                    row["id"] = None
                cols = ", ".join(row)
                cur = c.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
                ids.append(int(cur.lastrowid))
    return backup, ids


def job_row(run: Path) -> dict | None:
    """The store row of a run directory's job (see the module's docstring), or None when the run
    cannot be read."""
    try:
        info = rundir.read_info(run)
        queued = info.get(rundir.QUEUED) if isinstance(info.get(rundir.QUEUED), dict) else None
        cfg = rundir.read_config(run) if rundir.is_run(run) or not queued else TrainConfig.parse(queued["config"])
    except (FerError, KeyError, TypeError):
        return None
    job_id = info.get(rundir.JOB) if isinstance(info.get(rundir.JOB), int) else None
    lease = reports.read_lease(run)
    now = time.time()
    row = {"id": job_id, "config": json.dumps(cfg.to_dict()), "created": info.get("started") or now,
           "run_dir": str(run), "epoch": rundir.read_state(run).epoch, "total_epochs": cfg.epochs,
           "runner": (lease.runner if lease else (queued or {}).get("runner")) or LOCAL,
           "attempt": lease.attempt if lease else 0, "resume": 1}
    if lease is not None and lease.job == job_id and _live(run, lease):
        return {**row, "status": JobStatus.RUNNING.value, "started": info.get("started") or now, "heartbeat": now,
                "pid": _pid(run, lease)}
    if lease is not None and not lease.revoked:
        reports.update_lease(run, lease.job, lease.attempt, revoked=True)  # a stray worker must never write again
    if not rundir.is_run(run) and queued and lease is None:
        if queued.get("cancelled"):
            return {**row, "status": JobStatus.CANCELLED.value, "resume": 0, "finished": now}
        return {**row, "status": JobStatus.QUEUED.value, "resume": 0}
    finished = rundir.is_finished(info)
    return {**row, "status": (JobStatus.SUCCEEDED if finished else JobStatus.INTERRUPTED).value,
            "started": info.get("started"), "finished": info.get("finished") or now, "error": None if finished else REBUILT}


def _live(run: Path, lease: reports.Lease) -> bool:
    """Whether the lease's attempt may still be running: not revoked, no end reported, and its
    worker alive on this machine (or not heard from yet, or on a cluster: the scheduler judges it)."""
    if lease.revoked:
        return False
    report = reports.read_report(run, lease.job, lease.attempt)
    if report is None:
        return True
    if report.status in reports.ENDS:
        return False
    return report.host != socket.gethostname() or pid_alive(report.pid)


def _pid(run: Path, lease: reports.Lease) -> int | None:
    report = reports.read_report(run, lease.job, lease.attempt)
    return report.pid if report is not None and report.host == socket.gethostname() else None
