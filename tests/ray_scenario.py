"""The Ray runner end to end, on a real two-node Ray cluster: run by tests/test_ray.py inside a
network namespace that has only loopback (``unshare -n``), so none of Ray's traffic can leave
the machine.

It starts a head and a second node on 127.0.0.1, one CPU each, then: a 4-job sweep through Ray
(and a local job beside it), which lands on both nodes, while every Ray-run worker's open files
are read from /proc again and again (none may be the job store); a job on the second node whose
node is lost mid-job (its raylet SIGKILLed), then resumed on the head; a cancelled job; and a
job that finishes while the app does not look, picked up when it looks again. Then it stops
both nodes by the PIDs it started and checks that no process of theirs is left. It prints one
JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.ray_head import DASHBOARD, Head, alive, descendants, loopback_up, poll  # noqa: E402


class StoreWatch:
    """Reads the open files of every worker process that Ray runs (``/proc/PID/fd``)."""

    def __init__(self, nodes: list[Head], store: Path):
        self.nodes, self.store = nodes, str(store)
        self.workers: set[int] = set()
        self.opened: list[str] = []

    def look(self) -> None:
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            for pid in descendants(node.proc.pid):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"work" not in cmd or b"fer_core" not in cmd:
                        continue
                    self.workers.add(pid)
                    for fd in Path(f"/proc/{pid}/fd").iterdir():
                        target = os.readlink(fd)
                        if target.startswith(self.store):
                            self.opened.append(f"{pid}: {target}")
                except OSError:
                    continue  # the process ended meanwhile


def main() -> int:
    loopback_up()
    tmp = Path(tempfile.mkdtemp(prefix="fer-ray-"))
    os.environ.update(FER_DATA_DIR=str(tmp / "data"), RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="2",
                      RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    out: dict = {}
    head, second = Head(tmp, cpus=1), Head(tmp, cpus=1, worker=True)
    try:
        head.__enter__()
        second.__enter__()
        os.environ["FER_RAY_ADDRESS"] = DASHBOARD
        from fer_core import jobs
        from fer_core.jobs import store_path
        from fer_core.jobs.ray_runner import for_address
        from fer_core.runs import rundir
        from fer_core.runs.trainconfig import TrainConfig

        runner = for_address(DASHBOARD)
        nodes = poll("two nodes", lambda: len(runner.nodes()) == 2 and runner.nodes())
        head_id = next(n["id"] for n in nodes if "node:__internal_head__" in n["resources"])
        out["nodes"] = {"head": head_id, "second": next(n["id"] for n in nodes if n["id"] != head_id)}
        out["head_seconds"] = head.seconds
        head.note_processes()
        second.note_processes()
        watch = StoreWatch([head, second], store_path())

        def watched(what, predicate, **kw):
            return poll(what, lambda: (watch.look(), predicate())[1], **kw)

        # 1. a sweep of 4 tiny jobs through Ray (2 nodes, 1 CPU each: 2 at once), and a local job beside it
        tiny = lambda **kw: TrainConfig.for_model("tiny", data="demo:30", batch_size=32, **kw).to_dict()  # noqa: E731
        local_id = jobs.submit(TrainConfig.parse(tiny(epochs=2, seed=0)), where="local")
        sweep = jobs.make_sweep(lambda arch: tiny(epochs=2), seeds=[0, 1, 2, 3])
        sweep_id, ids = jobs.submit_sweep(sweep, where="ray")
        most = 0

        def sweep_done():
            nonlocal most
            with jobs.JobStore() as store:
                listed = store.list(sweep=sweep_id)
            states = [runner.status(j) for j in listed if j.status == jobs.JobStatus.RUNNING]
            most = max(most, sum(s == "RUNNING" for s in states), sum(j.status == jobs.JobStatus.RUNNING for j in listed))
            return all(j.status in jobs.ENDED for j in listed) and listed

        listed = watched("the sweep", sweep_done)
        with jobs.JobStore() as store:
            local = poll("the local job", lambda: store.get(local_id).status in jobs.ENDED and store.get(local_id))
        ray_job = listed[-1]
        out["sweep"] = {"id": sweep_id, "jobs": ids, "statuses": [j.status.value for j in listed],
                        "runners": sorted({j.runner for j in listed}), "most_at_once": most,
                        "node_ids": sorted({str(j.node_id) for j in listed}),
                        "submissions": [j.submission for j in listed],
                        "ray_files": sorted(p.name for p in Path(ray_job.run_dir).iterdir()),
                        "local_files": sorted(p.name for p in Path(local.run_dir).iterdir()),
                        "local_status": local.status.value, "local_node": local.node_id,
                        "ray_log": jobs.job_log(ray_job)[-2000:],
                        "run_log": rundir.read_log(ray_job.run_dir)[-2000:],
                        "run_info": {k: rundir.read_info(ray_job.run_dir).get(k) for k in ("sweep", "sweep_config")},
                        "errors": [j.error for j in listed if j.error]}
        out["cluster"] = jobs.cluster_view()

        # 2. the second node is lost mid-job: interrupted, then resumed on the head without a gap
        pair = [jobs.submit(TrainConfig.parse(tiny(epochs=40, seed=s)), where="ray") for s in (0, 1)]
        with jobs.JobStore() as store:
            def placed():
                got = [store.get(i) for i in pair]
                on_second = [j for j in got if j.node_id == out["nodes"]["second"] and j.epoch >= 2]
                return all(j.node_id for j in got) and on_second and on_second[0]

            victim = watched("a job at epoch 2 on the second node", placed)
            second.kill_raylet()
            job = watched("the lost node to be noticed", lambda: store.get(victim.id).status != jobs.JobStatus.RUNNING
                          and store.get(victim.id), timeout=120)
            # its worker dies with the node (Ray kills an entrypoint whose supervisor died), or at
            # the latest at its next heartbeat, when it reads its revoked lease
            gone = poll("the lost node's worker to end", lambda: not alive(job.pid), timeout=60, schedule=False)
            out["lost"] = {"status": job.status.value, "error": job.error, "node_id": victim.node_id,
                           "epoch_when_lost": job.epoch, "worker_ended": gone}
            watched("the other job", lambda: all(store.get(i).status in jobs.ENDED for i in pair if i != victim.id))
            store.resume(victim.id)
            job = watched("the resumed job", lambda: store.get(victim.id).status in jobs.ENDED and store.get(victim.id))
            out["resumed"] = {"status": job.status.value, "error": job.error, "attempt": job.attempt,
                              "node_id": job.node_id, "epochs": [r["epoch"] for r in rundir.read_metrics(job.run_dir)]}
            out["cluster_after"] = {"nodes": len(runner.nodes())}

            # 3. a cancelled Ray job stops on the cluster
            cancelled = jobs.submit(TrainConfig.parse(tiny(epochs=300)), where="ray")
            watched("an epoch of the job to cancel", lambda: store.get(cancelled).epoch >= 1)
            store.cancel(cancelled)
            job = watched("the cancel", lambda: store.get(cancelled).status in jobs.ENDED and store.get(cancelled))
            ray_state = poll("the cluster to end it", lambda: runner.status(job) not in ("PENDING", "RUNNING") and
                             runner.status(job), timeout=60)
            out["cancelled"] = {"status": job.status.value, "ray": ray_state, "pid_alive": alive(job.pid),
                                "epochs": len(rundir.read_metrics(job.run_dir)), "total": job.total_epochs}

            # 4. the app stops looking (as when its machine is down): the worker trains on, and
            # its result is picked up at the app's next look
            late = jobs.submit(TrainConfig.parse(tiny(epochs=3)), where="ray")
            started = watched("the job to be sent to Ray", lambda: store.get(late).submission and store.get(late))
            ended = poll("Ray to end the job while nobody looks", lambda: (
                watch.look(), runner.status(started) not in (None, "PENDING", "RUNNING") and runner.status(started))[1],
                         timeout=240, schedule=False)
            before = store.get(late)
            jobs.schedule()
            after = store.get(late)
            out["app_away"] = {"ray": ended, "before": [before.status.value, before.epoch],
                               "after": [after.status.value, after.epoch, after.total_epochs], "error": after.error,
                               "epochs": [r["epoch"] for r in rundir.read_metrics(after.run_dir)]}
        out["store_watch"] = {"workers_seen": len(watch.workers), "store_opened": watch.opened}
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for node in (second, head):
            if node.proc is not None:
                node.__exit__()
        out["left_behind"] = head.left_behind + second.left_behind
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
