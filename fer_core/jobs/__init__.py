"""Background training jobs: a SQLite job store, runners, a scheduler and the worker.

- :mod:`.store`: the job table, its states and the fenced writes (``JobStore``, ``JobStatus``);
- :mod:`.runners`: where workers run (``LocalRunner``; a cluster runner is one more class);
- :mod:`.scheduler`: ``schedule``, ``submit`` and ``open_store`` (open, schedule, act, close);
- :mod:`.worker`: the body of ``python -m fer_core jobs work ID``.

Workers are detached OS processes that never touch Streamlit; pages only poll the store.
"""

from .runners import LocalRunner, Runner, visible_gpus
from .scheduler import open_store, schedule, submit
from .store import FINAL, RESUMABLE, STALE_SECONDS, STORE_FILE, Job, JobStatus, JobStore, LeaseLost, connect, repair, store_path, transaction
from .worker import work

__all__ = ["FINAL", "RESUMABLE", "STALE_SECONDS", "STORE_FILE", "Job", "JobStatus", "JobStore", "LeaseLost", "LocalRunner",
           "Runner", "connect", "open_store", "repair", "schedule", "store_path", "submit", "transaction", "visible_gpus", "work"]
