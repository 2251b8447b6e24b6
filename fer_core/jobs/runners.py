"""Where jobs run: the runner interface and the local runner (detached processes on this machine).

A runner gives the scheduler its slots, starts a claimed job's worker, tells whether a worker
is alive and stops one. The Ray runner (:mod:`.ray_runner`) is the second backend.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from fer_core.config import PROJECT_ROOT, data_dir, env_number
from fer_core.device import visible_gpus
from fer_core.jobs.store import LOCAL, Job
from fer_core.runs import rundir


class Runner:
    """Where jobs run: the base of every runner. The local one starts processes; the Ray one
    submits them to a cluster.

    ``name`` is what the job store records (``local``, ``ray``); ``start`` returns the worker's
    pid (an int) or the cluster's id for it (a str); ``alive`` answers True (running), False
    (gone) or None (waiting on the cluster, not started yet); ``node`` names where a started
    job runs (None while that is not known yet); ``explain`` says what the runner knows of a
    dead worker's end ('' for nothing). A runner defines ``slots``, ``start``, ``alive`` and
    ``stop``; the rest have defaults here.
    """

    name: str = LOCAL

    def slots(self) -> list[int]:
        raise NotImplementedError

    def start(self, job: Job) -> int | str:
        raise NotImplementedError

    def alive(self, job: Job) -> bool | None:
        raise NotImplementedError

    def stop(self, job: Job) -> None:
        raise NotImplementedError

    def node(self, job: Job) -> str | None:
        return None

    def explain(self, job: Job) -> str:
        return ""


def worker_command(job: Job, tee: bool = False) -> list[str]:
    """The command line of the worker of a job's current attempt (``tee``: it also appends its
    output to the run's log, for runners that keep the output elsewhere)."""
    return [sys.executable, "-m", "fer_core", "jobs", "work", str(job.id), "--run-dir", str(job.run_dir),
            "--attempt", str(job.attempt), *(["--tee"] if tee else [])]


def worker_env(job: Job | None = None) -> dict[str, str]:
    """What a worker needs in its environment, wherever it runs: the project on its import path,
    the same data and runs folders (and allowed data folders) as this process, unbuffered output,
    and the Keras backend the job's config names (else this process's ``KERAS_BACKEND``, if set;
    a worker resuming a run takes the run's own, see ``fer_core.cli.training.choose_backend``)."""
    env = {"PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "FER_DATA_DIR": str(data_dir().resolve()), "PYTHONUNBUFFERED": "1",
           # JAX would take 75% of a GPU's memory per process; jobs that share a card grow as they need
           # (TensorFlow's workers set memory growth themselves)
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    for name in ("FER_RUNS_DIR", "FER_DATA_ROOTS", "FER2013_DIR", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND",
                 "XLA_PYTHON_CLIENT_PREALLOCATE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    backend = (job.config or {}).get("backend") if job is not None else None
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine is alive (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that its parent has not waited for yet is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LocalRunner(Runner):
    """Detached worker processes on this machine: one per GPU (pinned with CUDA_VISIBLE_DEVICES),
    or ``FER_MAX_JOBS`` (default 1) on a CPU-only machine."""

    name = LOCAL

    def __init__(self, max_jobs: int | None = None):
        self.gpus = visible_gpus()
        self.max_jobs = max_jobs or env_number("FER_MAX_JOBS")

    def slots(self) -> list[int]:
        return list(range(self.max_jobs or max(self.gpus, 1)))

    def start(self, job: Job) -> int:
        env = {**os.environ, **worker_env(job)}
        if self.gpus:
            ids = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(self.gpus)))).split(",")
            env["CUDA_VISIBLE_DEVICES"] = ids[job.slot % len(ids)].strip()
        Path(job.run_dir).mkdir(parents=True, exist_ok=True)
        with open(rundir.log_path(job.run_dir), "ab") as log:
            proc = subprocess.Popen(worker_command(job), cwd=str(PROJECT_ROOT), env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # outlives the Streamlit server
        return proc.pid

    def alive(self, job: Job) -> bool:
        """False once the worker's process is gone (True before its pid is known)."""
        return job.pid is None or pid_alive(job.pid)

    def node(self, job: Job) -> str:
        """Where local jobs run: this machine."""
        return socket.gethostname()

    def stop(self, job: Job) -> None:
        """Kill a job's worker (and its process group) if it is this job's worker on this machine.

        The command line is checked first, so a pid reused by another program is never touched.
        A stopped (SIGSTOP) process dies of SIGKILL too.
        """
        if job.pid is None or not pid_alive(job.pid):
            return
        try:
            cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if [c.decode(errors="replace") for c in cmdline if c][1:] != worker_command(job)[1:]:
            return
        try:
            os.killpg(job.pid, signal.SIGKILL)  # the worker leads its own session and process group
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
