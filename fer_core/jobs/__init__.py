"""Background training jobs: a SQLite job store, runners, a scheduler and the worker.

- :mod:`.store`: the job table, its states and the fenced writes (``JobStore``, ``JobStatus``);
- :mod:`.runners`: where workers run (``LocalRunner``) and :mod:`.ray_runner` (``RayRunner``);
- :mod:`.scheduler`: ``schedule``, ``submit`` and ``scheduled_store`` (open, schedule, act, close),
  the runner a job goes to, its log and the cluster view;
- :mod:`.sweep`: grids of configurations submitted as one sweep;
- :mod:`.worker`: the body of ``python -m fer_core jobs work ID``;
- :mod:`.reports`: the lease and the worker's report, the files through which a worker and the
  scheduler talk (a worker never opens the store).

Workers are detached OS processes that never touch Streamlit; pages only poll the store.
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
           ray_address_setting,
           save_ray_address,
           schedule,
           scheduled_store,
           submit,
)
from fer_core.jobs.sqlite import STORE_FILE, connect, store_path, transaction
from fer_core.jobs.liveness import STALE_SECONDS
from fer_core.jobs.store import ENDED, RESUMABLE, Job, JobStatus, JobStore, LeaseLost
from fer_core.jobs.sweep import FORM_SWEEPS, STUDY, form_sweep, make_sweep, parse_ints, parse_values, submit_sweep
from fer_core.jobs.worker import work

__all__ = ["Limits", "FORM_SWEEPS", "form_sweep", "ray_address_setting", "save_ray_address", "ENDED", "RESUMABLE", "RUNNERS", "STALE_SECONDS", "STORE_FILE", "STUDY", "Job", "JobStatus", "JobStore",
           "LeaseLost", "LocalRunner", "Runner", "cluster_view", "connect", "default_runner_name", "get_runner", "job_log",
           "make_sweep", "scheduled_store", "parse_ints", "parse_values", "repair", "schedule", "store_path", "submit",
           "submit_sweep", "transaction", "visible_gpus", "work"]
