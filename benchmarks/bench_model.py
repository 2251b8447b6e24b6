"""Benchmark the shipped default model on FER2013: accuracy with each TTA, macro F1, speed, size.

Usage: FER2013_DIR=/path/to/fer2013 python benchmarks/bench_model.py [--model MODEL_OR_RUN_DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.data import load_dataset  # noqa: E402
from fer_core.evaluate import evaluate  # noqa: E402
from fer_core.infer import load_model, resolve_model  # noqa: E402
from fer_core.release import measure_speed  # noqa: E402
from fer_core.tta import TTA_MODES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    root = os.environ.get("FER2013_DIR")
    if not root:
        sys.exit("Set FER2013_DIR to the FER2013 image folder.")
    ref = resolve_model(args.model)
    t0 = time.perf_counter()
    model = load_model(ref)
    load_s = time.perf_counter() - t0
    ds = load_dataset(root, merge=ref.merge)
    print(f"machine: {os.cpu_count()} CPU cores; model {ref.name}: {ref.path.stat().st_size / 1e6:.2f} MB, "
          f"{model.count_params():,} parameters, loaded in {load_s:.1f} s")
    print(f"{'split':12s} {'TTA':8s} {'accuracy':>9s} {'macro F1':>9s} {'seconds':>8s}")
    for split in ("PublicTest", "PrivateTest"):
        for tta in TTA_MODES:
            t0 = time.perf_counter()
            res = evaluate(model, ds, split, tta)
            print(f"{split:12s} {tta:8s} {res.metrics['accuracy']:9.4f} {res.metrics['macro_f1']:9.4f} "
                  f"{time.perf_counter() - t0:8.1f}", flush=True)
    speed = measure_speed(model, ds.subset("PrivateTest").images)
    print(f"single face, median of 20 after warm-up: {speed['latency_ms_none']} ms (no TTA), "
          f"{speed['latency_ms_tencrop']} ms (tencrop)")
    print(f"batch throughput (no TTA): {speed['throughput_faces_per_s']:,} faces/s")


if __name__ == "__main__":
    main()
