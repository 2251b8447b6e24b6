"""Benchmark the training engine: pipeline throughput, the demo preset, and recipes on FER2013.

Prints, measured in one run on this machine:
  - throughput (images/s) of a plain ``model.fit`` on in-memory float NumPy arrays against our
    tf.data pipeline (uint8 in, cast, one-hot, prefetch) without and with the default recipe's
    augmentation, same model and batch size, rounds interleaved, best round of each kept;
  - ``--backend tensorflow,jax[,torch]``: training samples/s of the training engine's own input
    path per Keras backend (tf.data augmentation under TensorFlow; NumPy batches and augmentation
    inside the training step elsewhere; under TensorFlow also the in-step augmentation, to compare
    the two), and prediction samples/s, each backend in its own process, rounds interleaved;
  - ``--demo``: how long the tiny preset takes to reach 95% validation accuracy on the demo set;
  - ``--real``: our default recipe against the Pramerdorfer & Kampel preset and experiment H at
    equal epochs on FER2013 (``FER2013_DIR``), PublicTest accuracy (last epoch, best epoch, and the
    best checkpoint after ``recalibrate``, for nets with batch norm); ``--train-limit`` trains on a
    random sample of the Training split (seed 0). The P&K net needs hours per ten epochs on two
    CPU cores, so with ``--out DIR`` every run keeps its checkpoints in ``DIR/NAME`` and a second
    call resumes the unfinished ones and reprints the finished ones (keep DIR under ``data/``,
    which git ignores: a sample CSV is written there).

Usage: python benchmarks/bench_train.py [--arch study-g] [--rounds 3] [--demo]
       python benchmarks/bench_train.py --backend tensorflow,jax --arch fer-vgg --images 1280
       FER2013_DIR=... python benchmarks/bench_train.py --real --epochs 10 [--train-limit 5000] \
           [--out data/bench-real]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.runs.trainconfig import TrainConfig  # noqa: E402


def throughput(arch: str, images: int, batch: int, rounds: int) -> None:
    import keras

    from fer_core.data.demo import make_demo_dataset
    from fer_core.models.build import create_model
    from fer_core.training.pipeline import make_input

    ds = make_demo_dataset(per_class=images // 7 + 1, seed=0)
    x8, y = ds.images[:images], ds.labels[:images]
    xf, y1 = x8[..., None].astype("float32"), keras.utils.to_categorical(y, 7)
    recipe = TrainConfig.for_model("fer-vgg", batch_size=batch)  # the default recipe's augmentation
    plain_cfg = TrainConfig(batch_size=batch, crop=recipe.crop)
    modes = {
        "plain model.fit(NumPy)": lambda m: m.fit(xf, y1, batch_size=batch, epochs=1, verbose=0, shuffle=True),
        "ours, no augmentation": lambda m: m.fit(make_input(x8, y, plain_cfg, 7, True), epochs=1, verbose=0),
        "ours, default augmentation": lambda m: m.fit(make_input(x8, y, recipe, 7, True), epochs=1, verbose=0),
    }
    models = {}
    for name, run in modes.items():
        keras.utils.set_random_seed(0)
        models[name] = create_model(arch, 7, crop=recipe.crop)
        models[name].compile("adam", loss="categorical_crossentropy", metrics=["accuracy"])
        run(models[name])  # warm-up: graph tracing, thread pools
    best = {name: float("inf") for name in modes}
    for _ in range(rounds):
        for name, run in modes.items():
            t0 = time.perf_counter()
            run(models[name])
            best[name] = min(best[name], time.perf_counter() - t0)
    base = images / best["plain model.fit(NumPy)"]
    print(f"\nthroughput: {arch}, {images} images, batch {batch}, best of {rounds} interleaved rounds")
    for name in modes:
        rate = images / best[name]
        print(f"  {name:28s} {rate:8.0f} img/s  ({rate / base:5.2f}x plain)")


def backend_child(mode: str, arch: str, images: int, batch: int, epochs: int) -> None:
    """In a process whose KERAS_BACKEND is set: print one JSON line of samples/s (best epoch)."""
    import json

    from fer_core.data.demo import make_demo_dataset
    from fer_core.device import setup_accelerators
    from fer_core.models.build import create_model
    from fer_core.training.pipeline import prepare
    from fer_core.training.trainer import compile_model, seed_everything

    setup_accelerators()
    ds = make_demo_dataset(per_class=images // 7 + 1, seed=0)
    faces, labels = ds.images[:images], ds.labels[:images]
    cfg = TrainConfig.for_model("fer-vgg", batch_size=batch, epochs=epochs + 1)  # the default recipe's augmentation
    seed_everything(0)
    net = create_model(arch, 7, crop=cfg.crop)
    compile_model(net, cfg, 7)
    fitting = prepare(net, (faces, labels), (faces[:batch], labels[:batch]), cfg, 7,
                      compile=lambda m, opt: compile_model(m, cfg, 7, opt), in_step=mode != "tensorflow")
    best = float("inf")
    for epoch in range(epochs + 1):  # the first builds and compiles the step
        fitting.begin_epoch(epoch)
        t0 = time.perf_counter()
        fitting.model.fit(fitting.train, epochs=1, verbose=0, shuffle=False)
        if epoch:
            best = min(best, time.perf_counter() - t0)
    x = faces[..., None].astype("float32")
    net.predict(x[:batch], batch_size=batch, verbose=0)
    t0 = time.perf_counter()
    net.predict(x, batch_size=batch, verbose=0)
    print(json.dumps({"train": images / best, "predict": images / (time.perf_counter() - t0)}))


def backends(names: list[str], arch: str, images: int, batch: int, rounds: int, epochs: int) -> None:
    """Each backend (and TensorFlow with in-step augmentation) in its own process, rounds interleaved."""
    import json
    import subprocess

    modes = [m for name in names for m in ((name, "tensorflow-in-step") if name == "tensorflow" else (name,))]
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for mode in modes:
            env = {**os.environ, "KERAS_BACKEND": mode.split("-")[0], "TF_CPP_MIN_LOG_LEVEL": "3"}
            done = subprocess.run([sys.executable, __file__, "--backend-child", mode, "--arch", arch, "--images",
                                   str(images), "--batch-size", str(batch), "--epochs", str(epochs)],
                                  env=env, capture_output=True, text=True)
            if done.returncode:
                print(f"  {mode}: failed\n{done.stderr[-2000:]}")
                continue
            got = json.loads(done.stdout.strip().splitlines()[-1])
            best[mode] = {k: max(v, best.get(mode, {}).get(k, 0)) for k, v in got.items()}
    print(f"\nbackends: {arch}, {images} demo faces, batch {batch}, the default recipe's augmentation; best epoch of "
          f"{epochs} per process, best of {rounds} interleaved rounds (samples/s)")
    base = best.get("tensorflow", {}).get("train")
    for mode, rates in best.items():
        where = "tf.data, beside the step" if mode == "tensorflow" else "inside the training step"
        ratio = f"  ({rates['train'] / base:4.2f}x TensorFlow's training)" if base else ""
        print(f"  {mode:20s} train {rates['train']:7.0f}  predict {rates['predict']:7.0f}   augmentation {where}{ratio}")


def demo(arch: str, epochs: int) -> None:
    from fer_core.training.trainer import train

    cfg = TrainConfig.for_model(arch, data="demo", epochs=epochs)
    t0, cpu0 = time.perf_counter(), time.process_time()
    reached = []

    def on_epoch(epoch, total, row):
        print(f"  epoch {epoch:2d}: val_accuracy {row['val_accuracy']:.3f}  wall {time.perf_counter() - t0:6.1f} s")
        if row["val_accuracy"] >= 0.95 and not reached:
            reached.append((epoch, time.perf_counter() - t0, time.process_time() - cpu0))

    with tempfile.TemporaryDirectory() as tmp:
        print(f"\ndemo set (3,500 drawn faces), preset {arch}, up to {epochs} epochs (data generation included):")
        train(cfg, Path(tmp) / "run", on_epoch=on_epoch)
    if reached:
        e, wall, cpu = reached[0]
        print(f"  reached 95% validation accuracy at epoch {e}: {wall:.1f} s wall, {cpu:.1f} s CPU time")
    else:
        print("  did not reach 95% validation accuracy")


def real(root: str, epochs: int, limit: int | None, models: list[str], out: str | None) -> None:
    from fer_core.runs import rundir
    from fer_core.training.calibrate import recalibrate_run
    from fer_core.data.loading import load_dataset, write_csv
    from fer_core.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(out or tmp)
        base.mkdir(parents=True, exist_ok=True)
        data = root
        if limit:
            data = base / f"sample-{limit}.csv"
            if not data.exists():
                full = load_dataset(root)
                rng = np.random.default_rng(0)
                keep = full.splits == "PublicTest"
                train_idx = np.flatnonzero(full.splits == "Training")
                keep[rng.choice(train_idx, min(limit, len(train_idx)), replace=False)] = True
                write_csv(full.select(keep), data)
            data = str(data)
        print(f"\nFER2013 {'Training sample of %d' % limit if limit else 'Training'}, {epochs} epochs, "
              f"each preset with its own recipe; PublicTest accuracy")
        for name in models:
            cfg = TrainConfig.for_model(name, data=data, epochs=epochs)
            run_dir = base / f"{name}-{limit or 'full'}-{epochs}"
            started = rundir.has_started(run_dir)
            done = rundir.read_metrics(run_dir) if started else []
            t0 = time.perf_counter()
            if len(done) < epochs:
                train(cfg, run_dir, resume=started)
            rows = rundir.read_metrics(run_dir)
            minutes = sum(r.get("epoch_seconds", 0) for r in rows) / 60
            # the recipe's last step: batch-norm statistics of the best checkpoint on clean faces
            info = rundir.read_info(run_dir)
            cal = info.get(rundir.BN_RECORD) or recalibrate_run(run_dir, data, tta="none", log=lambda *a: None)
            after = f"{cal['val_accuracy_after']:.4f}" if cal["layers"] else "  none"
            print(f"  {name:10s} last {rows[-1]['val_accuracy']:.4f}  best {max(r['val_accuracy'] for r in rows):.4f}"
                  f"  recalibrated {after}  ({minutes:5.1f} min of training, {time.perf_counter() - t0:6.0f} s this call)",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="study-g", help="model for the throughput comparison")
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="time the tiny preset on the demo set")
    parser.add_argument("--demo-epochs", type=int, default=15)
    parser.add_argument("--real", action="store_true", help="compare recipes on FER2013 instead")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--models", default="fer-vgg,pk-vgg,study-h")
    parser.add_argument("--out", help="keep --real runs here and resume them on the next call")
    parser.add_argument("--backend", help="compare Keras backends instead, e.g. tensorflow,jax")
    parser.add_argument("--backend-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend_child:
        backend_child(args.backend_child, args.arch, args.images, args.batch_size, args.epochs)
        return
    os.environ.setdefault("FER_DATA_DIR", tempfile.mkdtemp(prefix="fer-bench-"))
    print(f"machine: {os.cpu_count()} CPU cores")
    if args.real:
        root = os.environ.get("FER2013_DIR")
        if not root:
            sys.exit("Set FER2013_DIR to the FER2013 image folder.")
        real(root, args.epochs, args.train_limit or None, args.models.split(","), args.out)
        return
    if args.backend:
        backends(args.backend.split(","), args.arch, args.images, args.batch_size, args.rounds,
                 args.epochs if args.epochs != 10 else 2)
        return
    throughput(args.arch, args.images, args.batch_size, args.rounds)
    if args.demo:
        demo("tiny", args.demo_epochs)


if __name__ == "__main__":
    main()
