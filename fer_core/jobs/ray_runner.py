"""The Ray runner: jobs submitted to a Ray cluster through its Jobs API.

Each attempt of a job is one Ray job whose entrypoint is the same worker command as a local
job's (``python -m fer_core jobs work ID``); the worker writes the shared job store and run
directory itself, under ``FER_DATA_DIR``, which must be the same shared folder on every node.
The job store stays the one record the pages read; Ray's state is read only to know whether a
worker is waiting, running or gone, to stop it and to show its log.

Ray's Jobs API runs any command it is sent (CVE-2023-48022): whoever reaches the dashboard
address can run code on the cluster. FER Studio never starts a Ray head; bind yours to
loopback or turn on Ray's token authentication (README, "Training on a Ray cluster").
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shlex
import socket
import time
import urllib.request
from urllib.parse import urlparse

from fer_core.errors import ConfigError, JobError
from fer_core.jobs.runners import worker_command, worker_env
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


def _per_job(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default


class RayRunner:
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
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise JobError("The Ray runner needs Ray's Jobs API: pip install -r requirements-optional.txt "
                               "(ray[default]).") from None
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as exc:  # connection refused, timeouts, a wrong version: one message
                raise JobError(f"Cannot reach the Ray cluster at {self.address} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}). Is the head running, and is this its dashboard address?") from None
        return self._client

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
        """Total CPUs and GPUs of the alive nodes (read at most every 10 s)."""
        now = time.monotonic()
        if self._resources is None or now - self._resources[0] > 10:
            cpus = gpus = 0.0
            for node in self.nodes():
                cpus += node["resources"].get("CPU", 0.0)
                gpus += node["resources"].get("GPU", 0.0)
            self._resources = (now, {"CPU": cpus, "GPU": gpus})
        return self._resources[1]

    def request(self) -> dict[str, float]:
        """What one job asks the cluster for: ``{"GPU": n}`` when it has GPUs, else ``{"CPU": n}``."""
        gpus = _per_job("FER_RAY_GPUS_PER_JOB", 1.0)
        if self.totals()["GPU"] > 0 and gpus > 0:
            return {"GPU": gpus}
        return {"CPU": _per_job("FER_RAY_CPUS_PER_JOB", 1.0) or 1.0}

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
                entrypoint=shlex.join(worker_command(job.id, tee=True)), submission_id=submission,
                runtime_env={"env_vars": worker_env()}, metadata={"fer_job": str(job.id), "attempt": str(job.attempt)},
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

    def usage(self) -> dict[str, float]:
        """CPUs and GPUs in use on the cluster (by every job, FER Studio's or not), from the
        dashboard's cluster status (a few seconds behind); {} when it cannot be read."""
        request = urllib.request.Request(f"{self.address}/api/cluster_status?format=0")
        if os.environ.get("RAY_AUTH_TOKEN"):  # Ray's token authentication (RAY_AUTH_MODE=token)
            request.add_header("Authorization", f"Bearer {os.environ['RAY_AUTH_TOKEN']}")
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                report = json.load(reply)["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
            return {k: float(report[k][0]) for k in ("CPU", "GPU") if k in report}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return {}

    def cluster(self) -> dict:
        """The cluster view: address, total and free CPUs and GPUs, and FER Studio's jobs per node."""
        nodes = self.nodes()
        total = {k: sum(n["resources"].get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
        used = self.usage()
        per_node: dict[str, int] = {}
        ip = {n["id"]: n["ip"] for n in nodes}
        for details in self.client.list_jobs():
            if str(details.status.value) == RUNNING and (details.metadata or {}).get("fer_job"):
                where = ip.get(details.driver_node_id or "", details.driver_node_id or "unknown node")
                per_node[where] = per_node.get(where, 0) + 1
        return {"runner": NAME, "address": self.address, "loopback": is_loopback(self.address), "nodes": len(nodes),
                "cpus": total["CPU"], "gpus": total["GPU"],
                "free_cpus": max(total["CPU"] - used["CPU"], 0.0) if "CPU" in used else None,
                "free_gpus": max(total["GPU"] - used.get("GPU", 0.0), 0.0) if used else None, "slots": len(self.slots()),
                "jobs_per_node": per_node}
