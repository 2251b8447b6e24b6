"""The Ray runner end to end, against a real Ray head: run by tests/test_ray.py inside a network
namespace that has only loopback (``unshare -n``), so none of Ray's traffic can leave the machine.

It starts one head on 127.0.0.1 with 2 CPUs, then: a 4-job sweep through Ray (and a local job
beside it), a job whose worker is SIGKILLed and resumed, a cancelled job; then it stops the head
by the PID it started and checks that no process of it is left. It prints one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.ray_head import DASHBOARD, Head, alive, loopback_up, poll  # noqa: E402


def main() -> int:
    loopback_up()
    tmp = Path(tempfile.mkdtemp(prefix="fer-ray-"))
    os.environ.update(FER_DATA_DIR=str(tmp / "data"), RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="2")
    out: dict = {}
    head = Head(tmp, cpus=2)
    try:
        head.__enter__()
        os.environ["FER_RAY_ADDRESS"] = DASHBOARD
        from fer_core import jobs
        from fer_core.jobs.ray_runner import RayRunner
        from fer_core.runs import rundir
        from fer_core.runs.trainconfig import TrainConfig

        runner = RayRunner(DASHBOARD)
        poll("the head's 2 CPUs", lambda: sum(n["resources"].get("CPU", 0) for n in runner.nodes()) == 2)
        out["head_seconds"] = head.seconds
        head.note_processes()

        # 1. a sweep of 4 tiny jobs through Ray (2 CPUs: 2 at once), and a local job beside it
        tiny = lambda **kw: TrainConfig.for_model("tiny", data="demo:30", batch_size=32, **kw).to_dict()  # noqa: E731
        local_id = jobs.submit(TrainConfig.from_dict(tiny(epochs=2, seed=0)), where="local")
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

        listed = poll("the sweep", sweep_done)
        with jobs.JobStore() as store:
            local = poll("the local job", lambda: store.get(local_id).status in jobs.ENDED and store.get(local_id))
        ray_job = listed[-1]
        out["sweep"] = {"id": sweep_id, "jobs": ids, "statuses": [j.status.value for j in listed],
                        "runners": sorted({j.runner for j in listed}), "most_at_once": most,
                        "submissions": [j.submission for j in listed],
                        "ray_files": sorted(p.name for p in Path(ray_job.run_dir).iterdir()),
                        "local_files": sorted(p.name for p in Path(local.run_dir).iterdir()),
                        "local_status": local.status.value, "ray_log": jobs.job_log(ray_job)[-2000:],
                        "run_log": rundir.read_log(ray_job.run_dir)[-2000:],
                        "run_info": {k: rundir.read_info(ray_job.run_dir).get(k) for k in ("sweep", "sweep_config")},
                        "errors": [j.error for j in listed if j.error]}
        out["cluster"] = jobs.cluster_view()

        # 2. SIGKILL of a Ray job's process -> interrupted -> resume -> succeeded, no gap;
        # 3. a cancelled Ray job stops on the cluster (both run at once)
        killed = jobs.submit(TrainConfig.from_dict(tiny(epochs=6)), where="ray")
        cancelled = jobs.submit(TrainConfig.from_dict(tiny(epochs=300)), where="ray")
        with jobs.JobStore() as store:
            job = poll("two epochs", lambda: store.get(killed).epoch >= 2 and store.get(killed).pid and store.get(killed))
            os.kill(job.pid, signal.SIGKILL)
            job = poll("the kill to be noticed", lambda: store.get(killed).status != jobs.JobStatus.RUNNING and store.get(killed))
            out["killed"] = {"status": job.status.value, "error": job.error, "pid_alive": alive(job.pid)}
            store.resume(killed)
            job = poll("the resumed job", lambda: store.get(killed).status in jobs.ENDED and store.get(killed))
            out["resumed"] = {"status": job.status.value, "error": job.error, "attempt": job.attempt,
                              "epochs": [r["epoch"] for r in rundir.read_metrics(job.run_dir)]}
            poll("an epoch of the job to cancel", lambda: store.get(cancelled).epoch >= 1)
            store.cancel(cancelled)
            job = poll("the cancel", lambda: store.get(cancelled).status in jobs.ENDED and store.get(cancelled))
            ray_state = poll("the cluster to end it", lambda: runner.status(job) not in ("PENDING", "RUNNING") and
                             runner.status(job), timeout=60)
            out["cancelled"] = {"status": job.status.value, "ray": ray_state, "pid_alive": alive(job.pid),
                                "epochs": len(rundir.read_metrics(job.run_dir)), "total": job.total_epochs}
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if head.proc is not None:
            head.__exit__()
        out["left_behind"] = head.left_behind
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
