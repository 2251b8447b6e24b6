"""Background training jobs: a SQLite job store, runners, a scheduler and the worker.

- :mod:`.store`: the job table and the fenced writes (``JobStore``); a job's statuses are
  ``JobStatus`` (:mod:`fer_core.runs.status`, the one status vocabulary);
- :mod:`.runners`: where workers run (``Runner``, ``LocalRunner``) and :mod:`.ray_runner` (``RayRunner``);
- :mod:`.scheduler`: ``schedule``, ``submit``, ``open_store`` (a read: it schedules nothing),
  ``scheduled_store`` (for the commands that change jobs) and the server's scheduling loop
  (``start_scheduling_loop``), the runner a job goes to, its log and the cluster view;
- :mod:`.sweep`: grids of configurations submitted as one sweep;
- :mod:`.worker`: the body of ``python -m fer_core jobs work ID``;
- :mod:`.reports`: the lease and the worker's report, the files through which a worker and the
  scheduler talk while it trains.

A worker on a Ray cluster never opens the store. A local worker opens it only once it has ended,
on the app's machine: to record its end when its report could not be written, and to schedule
(so the next queued job starts even when no server runs). Workers are detached OS processes
that never touch Streamlit; a page's look at the store schedules nothing: the full server's
scheduling loop keeps the jobs moving.
"""

from fer_core.device import visible_gpus
from fer_core.jobs.limits import Limits
from fer_core.jobs.repair import repair
from fer_core.jobs.runners import LocalRunner, Runner
from fer_core.jobs.scheduler import (
           RUNNERS,
           cluster_view,
           default_runner_name,
           get_runner,
           job_log,
           not_current,
           open_store,
           ray_address_setting,
           save_ray_address,
           schedule,
           scheduled_store,
           start_scheduling_loop,
           stop_scheduling_loop,
           submit,
)
from fer_core.jobs.sqlite import STORE_FILE, connect, store_path, transaction
from fer_core.jobs.liveness import STALE_SECONDS
from fer_core.jobs.store import RESUMABLE, Job, JobStore, LeaseLost
from fer_core.runs.status import ACTIVE, ENDED, JobStatus
from fer_core.jobs.sweep import FORM_SWEEPS, STUDY, form_sweep, make_sweep, parse_ints, parse_values, submit_sweep
from fer_core.jobs.worker import work

__all__ = ["Limits", "FORM_SWEEPS", "form_sweep", "ray_address_setting", "save_ray_address", "ENDED", "RESUMABLE", "RUNNERS", "STALE_SECONDS", "STORE_FILE", "STUDY", "Job", "JobStatus", "JobStore",
           "LeaseLost", "LocalRunner", "Runner", "cluster_view", "connect", "default_runner_name", "get_runner", "job_log",
           "make_sweep", "not_current", "open_store", "scheduled_store", "start_scheduling_loop", "stop_scheduling_loop", "ACTIVE", "parse_ints", "parse_values", "repair", "schedule", "store_path", "submit",
           "submit_sweep", "transaction", "visible_gpus", "work"]
