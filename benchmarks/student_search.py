"""Choose the distilled student by measurement: train each candidate on the same short schedule,
from the same teacher, then print PublicTest accuracy beside speed and size.

    FER2013_DIR=... .venv/bin/python benchmarks/student_search.py [--epochs 3] [--teacher default]
        [--seeds 0] [--only fer-vgg-16,...]

Runs go to ``data/runs/search-<candidate>-e<epochs>-s<seed>``; a run that was cut short is resumed,
a finished one only measured, so the search continues across sessions. PublicTest only (the
validation split); PrivateTest is never read here.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: name: (arch, arch options). Three sizes and kinds: a narrower fer-vgg, depthwise-separable, mini-Xception.
CANDIDATES = {
    "fer-vgg-16": ("fer-vgg", {"width": 16}),
    "fer-dsc": ("fer-dsc", {}),
    "mini-xception": ("mini-xception", {}),
}


def short_config(arch: str, options: dict, data: str, teacher: str, epochs: int, seed: int):
    """The search's schedule, the same for every candidate: SGD with Nesterov momentum, cosine
    from 0.05 after one warm-up epoch, flips, shifts, small rotations and zoom (no erasing in so
    few epochs), the teacher's answers at T=4 weighted 0.9."""
    from fer_core.runs.trainconfig import TrainConfig

    return TrainConfig.for_model(
        arch, data=data, epochs=epochs, seed=seed, teacher=teacher, temperature=4.0, soft_weight=0.9,
        optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
        warmup_epochs=1, batch_size=64, flip=True, translate=0.1, rotation=10.0, zoom=0.1, erase=0.0,
        aug_warmup_epochs=0, recalibrate_bn=False, **options)


def speed(model, faces, repeats: int = 50) -> tuple[float, float]:
    """(faces/s in batches of 64, ms for one face), forward only, no TTA."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))
    call(faces[:64]), call(faces[:1])
    t0 = time.perf_counter()
    for i in range(0, len(faces), 64):
        call(faces[i:i + 64])
    batch = len(faces) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(repeats):
        call(faces[i:i + 1])
    return batch, (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FER2013_DIR", ""))
    ap.add_argument("--teacher", default="default")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    args = ap.parse_args()
    if not args.data:
        sys.exit("Set FER2013_DIR or give --data: the search trains on FER2013.")

    import numpy as np

    from fer_core.config import runs_dir
    from fer_core.device import quiet_tensorflow
    from fer_core.inference.loader import load_model, resolve_model
    from fer_core.runs import rundir
    from fer_core.training.trainer import train

    quiet_tensorflow()
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        for name in names:
            arch, options = CANDIDATES[name]
            run = runs_dir() / f"search-{name}-e{args.epochs}-s{seed}"
            if not rundir.is_run(run):
                train(short_config(arch, options, args.data, args.teacher, args.epochs, seed), run, verbose=2)
            elif not rundir.is_finished(rundir.read_info(run)):
                train(run_dir=run, resume=True, verbose=2)
            metrics = rundir.read_metrics(run)
            model = load_model(resolve_model(str(run)))
            faces = np.random.default_rng(0).integers(0, 256, (1024, 48, 48, 1)).astype("float32")
            batch, single = speed(model, faces)
            rows.append((name, seed, model.count_params(), max(r["val_accuracy"] for r in metrics),
                         np.mean([r["epoch_seconds"] for r in metrics]), batch, single,
                         rundir.final_model(run).stat().st_size / 1e6))
    print(f"\n{platform.machine()}, {os.cpu_count()} CPU cores; {args.epochs} epochs from teacher {args.teacher!r}")
    print(f"{'student':<15}{'seed':>5}{'params':>10}{'PublicTest':>11}{'s/epoch':>9}{'faces/s':>9}{'ms/face':>9}{'MB':>7}")
    for name, seed, params, acc, epoch, batch, single, mb in rows:
        print(f"{name:<15}{seed:>5}{params:>10,}{acc:>11.4f}{epoch:>9.0f}{batch:>9.0f}{single:>9.2f}{mb:>7.2f}")


if __name__ == "__main__":
    main()
