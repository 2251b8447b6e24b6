"""Benchmark the Ray runner against the local one: submit-to-first-epoch overhead, and an 8-job
sweep's wall time with 1 and 2 slots.

It starts its own Ray head on 127.0.0.1, so run it inside a network namespace with only
loopback (Ray's agents would otherwise talk to the machine's outward address):

    unshare -n .venv/bin/python benchmarks/bench_ray.py [--epochs 3] [--repeats 3]

Jobs are the tiny preset on 30 demo faces per class, so the figures are the runner's overhead
(process start, TensorFlow import, scheduling), not training.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ray_head import DASHBOARD, Head, loopback_up, poll  # noqa: E402


def first_epoch_seconds(where: str, repeats: int) -> list[float]:
    """Seconds from submit to the job's first recorded epoch, one job at a time."""
    from fer_core import jobs
    from fer_core.runs.trainconfig import TrainConfig

    out = []
    for seed in range(repeats):
        cfg = TrainConfig.for_model("tiny", data="demo:30", epochs=2, batch_size=32, seed=seed)
        t0 = time.perf_counter()
        job_id = jobs.submit(cfg, where=where)
        with jobs.JobStore() as store:
            poll("the first epoch", lambda: store.get(job_id).epoch >= 1, timeout=600, every=0.2)
            out.append(time.perf_counter() - t0)
            poll("the end", lambda: store.get(job_id).status in jobs.ENDED, timeout=600, every=0.2)
    return out


def sweep_seconds(epochs: int, n: int = 8) -> float:
    """Wall time of an n-job sweep through Ray, from submit to the last job's end."""
    from fer_core import jobs
    from fer_core.runs.trainconfig import TrainConfig

    base = TrainConfig.for_model("tiny", data="demo:30", epochs=epochs, batch_size=32).to_dict()
    t0 = time.perf_counter()
    sweep_id, ids = jobs.submit_sweep(jobs.make_sweep(lambda arch: base, seeds=list(range(n))), where="ray")
    with jobs.JobStore() as store:
        poll("the sweep", lambda: all(store.get(i).status in jobs.ENDED for i in ids), timeout=1200)
        bad = [i for i in ids if store.get(i).status != jobs.JobStatus.SUCCEEDED]
    if bad:
        raise RuntimeError(f"jobs {bad} did not succeed")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per sweep job")
    parser.add_argument("--repeats", type=int, default=3, help="jobs timed per runner for the overhead")
    args = parser.parse_args()
    loopback_up()
    tmp = Path(tempfile.mkdtemp(prefix="fer-bench-ray-"))
    os.environ.update(FER_DATA_DIR=str(tmp / "data"), RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="2")
    with Head(tmp, cpus=2) as head:
        os.environ["FER_RAY_ADDRESS"] = DASHBOARD
        print(f"machine: {os.cpu_count()} CPU cores; Ray head with 2 CPUs up in {head.seconds} s")
        local = first_epoch_seconds("local", args.repeats)
        ray = first_epoch_seconds("ray", args.repeats)
        ml, mr = statistics.median(local), statistics.median(ray)
        print(f"submit -> first epoch, median of {args.repeats}: local {ml:.1f} s, Ray {mr:.1f} s "
              f"(Ray adds {mr - ml:+.1f} s; local {', '.join(f'{t:.1f}' for t in local)}; "
              f"Ray {', '.join(f'{t:.1f}' for t in ray)})", flush=True)
        walls = {}
        for slots, cpus_per_job in ((1, "2"), (2, "1")):
            os.environ["FER_RAY_CPUS_PER_JOB"] = cpus_per_job
            walls[slots] = sweep_seconds(args.epochs)
            print(f"8-job sweep ({args.epochs} epochs each) on Ray with {slots} slot(s): {walls[slots]:.1f} s",
                  flush=True)
        print(f"2 slots vs 1: {walls[1] / walls[2]:.2f}x faster")
    print(f"head stopped; processes left behind: {head.left_behind or 'none'}")


if __name__ == "__main__":
    main()
