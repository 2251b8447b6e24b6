"""A Ray head for tests and benchmarks: started on 127.0.0.1, stopped by the PID it was started with.

Run it only inside a network namespace that has only loopback (``unshare -n``): Ray's agents
open connections to the machine's outward address even when told 127.0.0.1. FER Studio itself
never starts a Ray head.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DASHBOARD = "http://127.0.0.1:8265"


def loopback_up() -> None:
    """Bring up ``lo`` in a fresh network namespace (it starts down)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int | None) -> bool:
    """Whether a process is alive (a zombie is not)."""
    try:
        return pid is not None and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def poll(what: str, predicate, timeout: float = 240, every: float = 0.5, schedule: bool = True):
    """Schedule jobs (no page is open to do it) until ``predicate()`` gives something true; return it.
    ``schedule=False``: only wait, as when the app is not looking."""
    from fer_core import jobs

    deadline = time.time() + timeout
    while time.time() < deadline:
        if schedule:
            jobs.schedule()
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


class Head:
    """``ray start --head --block`` with ``cpus`` CPUs and its own temp dir; a context manager.
    ``worker=True``: a second node of the same cluster on this machine instead (it joins the
    head at 127.0.0.1:6379, with ports of its own), which can be lost with :meth:`kill_raylet`."""

    def __init__(self, tmp: Path, cpus: int = 2, worker: bool = False):
        self.tmp, self.cpus, self.worker, self.proc, self.started = Path(tmp), cpus, worker, None, set()
        self.left_behind: list[int] = []
        self.seconds = 0.0

    def __enter__(self) -> "Head":
        t0 = time.time()
        ray = str(Path(sys.executable).parent / "ray")
        self.log = self.tmp / ("node.log" if self.worker else "head.log")
        role = (["--address=127.0.0.1:6379", "--dashboard-agent-listen-port=52366", "--metrics-export-port=0"]
                if self.worker else ["--head", "--dashboard-host=127.0.0.1", f"--temp-dir={self.tmp / 'ray'}"])
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [ray, "start", *role, "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", "--disable-usage-stats",
                 "--block"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while not self._up():
            if self.proc.poll() is not None or time.time() > deadline:
                self.__exit__()
                raise RuntimeError("the Ray node did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.5)
        self.seconds = round(time.time() - t0, 1)
        return self

    def _up(self) -> bool:
        if self.worker:  # the node's raylet is running once it has children that are Ray's workers
            return any(self._cmd(p).endswith("raylet") for p in descendants(self.proc.pid)) and "Ray runtime started" \
                in self.log.read_text(errors="replace")
        try:
            urllib.request.urlopen(f"{DASHBOARD}/api/version", timeout=2).read()
            return True
        except OSError:
            return False

    @staticmethod
    def _cmd(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return ""

    def kill_raylet(self) -> int:
        """SIGKILL this node's raylet (found among the processes this node's ``ray start`` started):
        the node is lost, as when its machine goes down. Returns the raylet's pid."""
        self.note_processes()
        pid = next(p for p in descendants(self.proc.pid) if self._cmd(p).endswith("raylet"))
        os.kill(pid, signal.SIGKILL)
        return pid

    def __exit__(self, *exc) -> None:
        """Stop the node by its PID; then make sure no process it started is left."""
        self.started |= descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.time() + 30
        while any(alive(p) for p in self.started) and time.time() < deadline:
            time.sleep(0.5)
        self.left_behind = sorted(p for p in self.started if alive(p))
        for pid in self.left_behind:  # never leave anything running, even when a check fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def note_processes(self) -> None:
        """Remember the node's processes now (they are checked for at the end)."""
        self.started |= descendants(self.proc.pid)
