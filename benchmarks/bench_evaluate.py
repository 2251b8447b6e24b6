"""An uncached evaluation, as the Evaluate page and ``evaluate`` make it: the model loaded and a
split classified with a TTA, by the inference engine and by Keras, in one run.

    FER2013_DIR=... .venv/bin/python benchmarks/bench_evaluate.py [--model default] [--split PrivateTest]
        [--tta flip]

Prints seconds to load and to evaluate, and the accuracy, for each runtime (the engine first).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from fer_core.data.loading import load_dataset
    from fer_core.device import quiet_tensorflow
    from fer_core.inference.engine import load_engine
    from fer_core.inference.evaluate import evaluate
    from fer_core.inference.loader import load_model, resolve_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--tta", default="flip")
    args = ap.parse_args()
    quiet_tensorflow()
    source = os.environ.get("FER2013_DIR") or "demo"
    ds = load_dataset(source)
    ref = resolve_model(args.model)
    print(f"model {ref.name}, {source} {args.split} ({len(ds.subset(args.split))} faces), TTA {args.tta}; "
          f"{platform.machine()}, {os.cpu_count()} CPU cores")
    for label, load in (("engine", load_engine), ("Keras", load_model)):
        t0 = time.perf_counter()
        model = load(ref)
        loaded = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate(model, ds, args.split, args.tta, name=ref.name)
        took = time.perf_counter() - t0
        runtime = getattr(model, "runtime", "Keras")
        print(f"{label:7s} ({runtime}): load {loaded:5.2f} s, evaluate {took:6.2f} s, accuracy "
              f"{res.metrics['accuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()
