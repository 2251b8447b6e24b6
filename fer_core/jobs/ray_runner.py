"""The Ray runner: jobs submitted to a Ray cluster through its Jobs API.

Each attempt of a job is one Ray job whose entrypoint is the same worker command as a local
job's (``python -m fer_core jobs work ID --run-dir DIR --attempt N``). The worker never opens
the job store, which stays on the app's machine: it reads its lease from the run directory and
reports there (:mod:`.reports`), so only the run directories need shared storage, at the same
path on every node. The scheduler beside the app takes the reports into the store; Ray's state
is read only to know whether a worker is waiting, running or gone, where it runs, to stop it
and to show its log. Only Ray's public client APIs are used (the Jobs SDK and the State API).

Ray's Jobs API runs any command it is sent (CVE-2023-48022): whoever reaches the dashboard
address can run code on the cluster. FER Studio never starts a Ray head; bind yours to
loopback or turn on Ray's token authentication (README, "Training on a Ray cluster").
"""

from __future__ import annotations

import ipaddress
import secrets
import shlex
import socket
import threading
import time
from urllib.parse import urlparse

from fer_core.config import env_float
from fer_core.errors import ConfigError, JobError
from fer_core.jobs.runners import Runner, worker_command, worker_env
from fer_core.jobs.store import Job

NAME = "ray"
#: Ray's job states, and what each means for a worker.
PENDING, RUNNING = "PENDING", "RUNNING"


def check_address(text: str) -> str:
    """A dashboard address as Ray's client takes it (``http://HOST:PORT``).

    Raises:
        ConfigError: not an http(s) address with a host and a port (field ``ray_address``).
    """
    value = text.strip()
    parsed = urlparse(value)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ConfigError(f"{value!r} is not a Ray dashboard address: give it as http://HOST:PORT (the dashboard's "
                          "port, 8265 by default), e.g. http://127.0.0.1:8265.", field="ray_address")
    return value.rstrip("/")


def is_loopback(address: str) -> bool:
    """Whether the address names this machine only (127.0.0.0/8, ::1, localhost)."""
    host = urlparse(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RayRunner(Runner):
    """Submits each job's worker to the Ray cluster at ``address``.

    A job asks for ``FER_RAY_GPUS_PER_JOB`` GPUs (default 1) when the cluster has GPUs, else
    ``FER_RAY_CPUS_PER_JOB`` CPUs (default 1); the cluster's slots are how many such jobs fit
    in it at once, so a sweep runs that many in parallel and queues the rest in our store.
    """

    name = NAME

    def __init__(self, address: str):
        self.address = check_address(address)
        self._client = None
        self._resources: tuple[float, dict] | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()  # one runner serves every session's thread (see for_address)

    # ------------------------------------------------------------ the cluster
    def _check_reachable(self) -> None:
        """Fail fast when the dashboard's port does not answer: Ray's client sets no timeout,
        so an address that drops packets would hang every page that looks at the jobs. A
        failure is remembered for 15 s."""
        now = time.monotonic()
        if now >= self._down_until:
            parsed = urlparse(self.address)
            try:
                socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
                return
            except OSError:
                self._down_until = now + 15
        raise JobError(f"Cannot reach the Ray cluster at {self.address}: nothing answers there. Is the head running, "
                       "and is this its dashboard address?")

    @property
    def client(self):
        self._check_reachable()
        if self._client is None:  # built outside any lock (it asks the dashboard); the first one built is kept
            made = self._connect()
            with self._lock:
                if self._client is None:
                    self._client = made
        return self._client

    def _connect(self):
        """A new client of the Jobs API (it asks the dashboard for its version)."""
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise JobError("The Ray runner needs Ray's Jobs API: pip install -r requirements-optional.txt "
                           "(ray[default]).") from None
        try:
            return JobSubmissionClient(self.address)
        except Exception as exc:  # connection refused, timeouts, a wrong version: one message
            raise JobError(f"Cannot reach the Ray cluster at {self.address} ({type(exc).__name__}: "
                           f"{str(exc)[:200]}). Is the head running, and is this its dashboard address?") from None

    def nodes(self) -> list[dict]:
        """The cluster's alive nodes: id, address and total resources."""
        self._check_reachable()
        try:
            from ray.util.state import list_nodes

            found = list_nodes(address=self.address, detail=True, raise_on_missing_output=False, timeout=10)
        except ImportError:
            raise JobError("The Ray runner needs ray[default]: pip install -r requirements-optional.txt.") from None
        except Exception as exc:
            raise JobError(f"Cannot read the Ray cluster's nodes at {self.address} ({type(exc).__name__}: "
                           f"{str(exc)[:200]}).") from None
        return [{"id": n.node_id, "ip": n.node_ip, "resources": dict(n.resources_total or {})}
                for n in found if n.state == "ALIVE"]

    def totals(self) -> dict[str, float]:
        """Total CPUs and GPUs of the alive nodes (read at most every 10 s, for every caller)."""
        cached = self._resources
        if cached is not None and time.monotonic() - cached[0] <= 10:
            return cached[1]
        nodes = self.nodes()
        totals = {k: sum(n["resources"].get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
        self._resources = (time.monotonic(), totals)
        return totals

    def request(self) -> dict[str, float]:
        """What one job asks the cluster for: ``{"GPU": n}`` when it has GPUs, else ``{"CPU": n}``."""
        gpus = env_float("FER_RAY_GPUS_PER_JOB")
        if self.totals()["GPU"] > 0 and gpus > 0:
            return {"GPU": gpus}
        return {"CPU": env_float("FER_RAY_CPUS_PER_JOB")}

    def slots(self) -> list[int]:
        """As many slots as jobs fit in the cluster at once (none while it cannot be reached)."""
        try:
            (kind, each), = self.request().items()
            return list(range(int(self.totals()[kind] // each)))
        except JobError:
            return []

    # ----------------------------------------------------------------- jobs
    def start(self, job: Job) -> str:
        ask = self.request()
        submission = f"fer-job-{job.id}-attempt-{job.attempt}-{secrets.token_hex(3)}"
        try:
            return self.client.submit_job(
                entrypoint=shlex.join(worker_command(job, tee=True)), submission_id=submission,
                runtime_env={"env_vars": worker_env(job)}, metadata={"fer_job": str(job.id), "attempt": str(job.attempt)},
                entrypoint_num_cpus=ask.get("CPU", 0), entrypoint_num_gpus=ask.get("GPU", 0))
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"Ray refused job {job.id} ({type(exc).__name__}: {str(exc)[:300]}).") from None

    def status(self, job: Job) -> str | None:
        """Ray's state of the job's current attempt (None when it cannot be asked)."""
        if not job.submission:
            return None
        try:
            return str(self.client.get_job_status(job.submission).value)
        except Exception:  # unreachable cluster, unknown id: the heartbeat decides
            return None

    def alive(self, job: Job) -> bool | None:
        """None while Ray holds the job back (pending: waiting for resources or its environment);
        False once Ray says it ended; True otherwise, also when the cluster cannot be asked
        (then the worker's heartbeat decides)."""
        state = self.status(job)
        if state == PENDING:
            return None
        return state is None or state == RUNNING

    def node(self, job: Job) -> str | None:
        """The id of the Ray node the job's worker runs on (None until Ray has placed it)."""
        if not job.submission:
            return None
        try:
            return self.client.get_job_info(job.submission).driver_node_id or None
        except Exception:  # unreachable cluster, unknown id: asked again on the next look
            return None

    def stop(self, job: Job) -> None:
        if job.submission:
            try:
                self.client.stop_job(job.submission)
            except Exception:
                pass  # already ended, or the cluster is gone: nothing is left to stop

    def explain(self, job: Job) -> str:
        """What Ray says of an ended job, and its log's last line."""
        if not job.submission:
            return ""
        try:
            info = self.client.get_job_info(job.submission)
            tail = [line for line in self.logs(job).splitlines() if line.strip()][-1:]
        except Exception:
            return ""
        message = (info.message or "").split(", last available logs")[0].strip()  # Ray appends the whole log
        return f"Ray: {info.status.value}" + (f", {message}" if message else "") + (f"; last log line: {tail[0]}." if tail else ".")

    def logs(self, job: Job, tail: int = 20_000) -> str:
        """The worker's output as Ray kept it (the end, ``tail`` characters)."""
        if not job.submission:
            return ""
        try:
            return self.client.get_job_logs(job.submission)[-tail:]
        except Exception as exc:
            raise JobError(f"Cannot read job {job.id}'s log from Ray ({type(exc).__name__}: {str(exc)[:200]}).") from None

    def usage(self) -> dict[str, float] | None:
        """CPUs and GPUs held now by the cluster's alive actors and running tasks (a job's
        entrypoint reservation is its supervisor actor's), from Ray's State API; None when it
        cannot be read."""
        try:
            from ray.util.state import list_actors, list_tasks

            held = [*list_actors(address=self.address, filters=[("state", "=", "ALIVE")], detail=True, limit=10_000,
                                 timeout=10, raise_on_missing_output=False),
                    *list_tasks(address=self.address, filters=[("state", "=", "RUNNING")], detail=True, limit=10_000,
                                timeout=10, raise_on_missing_output=False)]
        except Exception:  # an old head, a timeout: the view shows totals only
            return None
        return {k: sum(float((item.required_resources or {}).get(k, 0.0)) for item in held) for k in ("CPU", "GPU")}

    def cluster(self) -> dict:
        """The cluster view: address, total and free CPUs and GPUs (free: not held by an alive
        actor or a running task; None when that cannot be read), and FER Studio's jobs per
        node (by node id and address)."""
        nodes = self.nodes()
        total = {k: sum(n["resources"].get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
        client = self.client
        try:
            listed = client.list_jobs()
        except Exception as exc:
            raise JobError(f"Cannot list the Ray cluster's jobs at {self.address} ({type(exc).__name__}: "
                           f"{str(exc)[:200]}).") from None
        used = self.usage()
        per_node: dict[str, int] = {}
        ip = {n["id"]: n["ip"] for n in nodes}
        for details in listed:
            if str(details.status.value) == RUNNING and (details.metadata or {}).get("fer_job"):
                node = details.driver_node_id or ""
                where = f"{node[:12]} ({ip[node]})" if node in ip else node or "unknown node"
                per_node[where] = per_node.get(where, 0) + 1
        return {"runner": NAME, "address": self.address, "loopback": is_loopback(self.address), "nodes": len(nodes),
                "node_ids": [n["id"] for n in nodes], "cpus": total["CPU"], "gpus": total["GPU"],
                "free_cpus": None if used is None else max(total["CPU"] - used["CPU"], 0.0),
                "free_gpus": None if used is None else max(total["GPU"] - used["GPU"], 0.0),
                "slots": len(self.slots()), "jobs_per_node": per_node}


_RUNNERS: dict[str, RayRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def for_address(address: str) -> RayRunner:
    """The one runner of a cluster address for the life of this process, so its client, its
    memory of an unreachable cluster (15 s) and its cached totals (10 s) are shared by every
    schedule() call, page and session. Safe to call from any thread."""
    key = check_address(address)
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = RayRunner(key)
        return runner
