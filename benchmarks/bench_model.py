"""Benchmark shipped models on FER2013: accuracy with each TTA, macro F1, speed, size.

Several ``--model`` values are measured in one run, so their speeds compare as ratios on the
same (shared, noisy) machine; the first is the reference.

Usage: FER2013_DIR=/path/to/fer2013 python benchmarks/bench_model.py [--model MODEL_OR_RUN_DIR ...]
       [--speed-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.data.loading import load_dataset  # noqa: E402
from fer_core.inference.evaluate import evaluate  # noqa: E402
from fer_core.inference.loader import load_model, resolve_model  # noqa: E402
from fer_core.shipping.measure import measure_speed  # noqa: E402
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model or run directory, or 'default' (repeatable)")
    parser.add_argument("--speed-only", action="store_true", help="skip the accuracy table")
    args = parser.parse_args()
    root = os.environ.get("FER2013_DIR")
    if not root:
        sys.exit("Set FER2013_DIR to the FER2013 image folder.")
    ds = load_dataset(root)
    rows = []
    for name in args.model or ["default"]:
        ref = resolve_model(name)
        t0 = time.perf_counter()
        model = load_model(ref)
        load_s = time.perf_counter() - t0
        mb = ref.path.stat().st_size / 1e6
        print(f"machine: {os.cpu_count()} CPU cores; model {name}: {mb:.2f} MB, "
              f"{model.count_params():,} parameters, loaded in {load_s:.1f} s", flush=True)
        if not args.speed_only:
            data = ds if not ref.merge else load_dataset(root, merge=ref.merge)
            print(f"{'split':12s} {'TTA':8s} {'accuracy':>9s} {'macro F1':>9s} {'seconds':>8s}")
            for split in ("PublicTest", "PrivateTest"):
                for tta in TTA_MODES:
                    t0 = time.perf_counter()
                    res = evaluate(model, data, split, tta)
                    print(f"{split:12s} {tta:8s} {res.metrics['accuracy']:9.4f} {res.metrics['macro_f1']:9.4f} "
                          f"{time.perf_counter() - t0:8.1f}", flush=True)
        speed = measure_speed(model, ds.subset("PrivateTest").images)
        print(f"single face, median of 20 after warm-up: {speed['latency_ms_none']} ms (no TTA), "
              f"{speed[f'latency_ms_{DEFAULT_TTA}']} ms ({DEFAULT_TTA}); "
              f"batch throughput (no TTA): {speed['throughput_faces_per_s']:,} faces/s", flush=True)
        rows.append((name, mb, load_s, speed))
    if len(rows) > 1:
        ref_speed = rows[0][3]
        print(f"\n{'model':40s} {'MB':>6s} {'load s':>7s} {'ms none':>8s} {'ms ' + DEFAULT_TTA:>8s} "
              f"{'x ref':>6s} {'faces/s':>8s}")
        for name, mb, load_s, speed in rows:
            ratio = speed[f"latency_ms_{DEFAULT_TTA}"] / ref_speed[f"latency_ms_{DEFAULT_TTA}"]
            print(f"{name[-40:]:40s} {mb:6.2f} {load_s:7.1f} {speed['latency_ms_none']:8.1f} "
                  f"{speed[f'latency_ms_{DEFAULT_TTA}']:8.1f} {ratio:6.2f} {speed['throughput_faces_per_s']:8,}")


if __name__ == "__main__":
    main()
