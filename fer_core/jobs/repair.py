"""``jobs repair``: a damaged job store rebuilt from the run directories."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fer_core.errors import FerError
from fer_core.jobs.sqlite import store_path, transaction
from fer_core.jobs.store import JobStatus, JobStore
from fer_core.runs import rundir


def repair(path: str | Path | None = None) -> tuple[Path | None, list[int]]:
    """Rebuild a damaged job store from the run directories; keep the damaged file as a backup.

    Every run directory under ``data/runs`` becomes a job again: ``succeeded`` when it finished,
    else ``interrupted`` (resumable from its last checkpoint). Returns ``(backup, new job ids)``;
    backup is None when there was no store file.
    """
    path = Path(path) if path else store_path()
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(backup)
    for suffix in ("-wal", "-shm"):  # the damaged file's journal must not be replayed into the new one
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(Path(f"{backup or path}{suffix}"))
    ids = []
    with JobStore(path) as store:
        for run in reversed(rundir.run_dirs()):  # oldest first, so ids keep their order
            try:
                cfg, info = rundir.read_config(run), rundir.read_info(run)
            except FerError:  # a broken run is left out, not the whole repair
                continue
            done = rundir.read_state(run).epoch
            finished = rundir.is_finished(info)
            status = JobStatus.SUCCEEDED if finished else JobStatus.INTERRUPTED
            with transaction(store.conn, store.path) as c:
                cur = c.execute("INSERT INTO jobs (config, status, created, started, finished, run_dir, epoch, "
                                "total_epochs, resume, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                                (json.dumps(cfg.to_dict()), status.value, info.get("started") or time.time(),
                                 info.get("started"), info.get("finished") or time.time(), str(run), done, cfg.epochs,
                                 None if finished else "Rebuilt from its run directory by 'jobs repair'; resume it "
                                 "to continue from its last checkpoint."))
                ids.append(int(cur.lastrowid))
    return backup, ids
