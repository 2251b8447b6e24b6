"""Training: a tf.data pipeline, ``model.fit`` with callbacks, run directories and resume.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per finished epoch),
``last.keras`` (model and optimizer state, for resume), ``best.keras`` (best validation
accuracy), ``model.keras`` (the final model: the best weights, no optimizer), ``classes.json``,
``run.json`` (data source, timings, device, status, batch-norm recalibration) and ``versions.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .calibrate import RECORD, recalibrate_if_better
from .config import runs_dir
from .data import load_dataset
from .errors import ConfigError, FerError
from .trainconfig import TrainConfig

LAST, BEST, FINAL = "last.keras", "best.keras", "model.keras"
METRICS = "metrics.jsonl"


def new_run_dir(cfg: TrainConfig) -> Path:
    """A fresh, unique run directory under ``data/runs``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = "".join(ch if ch.isalnum() else "-" for ch in cfg.arch.lower())[:40]
    for i in range(1000):
        path = runs_dir() / (f"{stamp}-{base}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FerError("Could not create a run directory; data/runs is full of same-second runs.")


def read_metrics(run_dir: Path) -> list[dict]:
    """Return the per-epoch metrics of a run (empty when none yet)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a half-written last line from a crash
    return rows


def _save_model(model, path: Path) -> None:
    """Save atomically: a worker killed mid-save leaves the previous checkpoint intact."""
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


# ------------------------------------------------------------------ input pipeline
def make_input(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, num_classes: int, training: bool,
               strength=None):
    """Build the tf.data pipeline: shuffle, batch, augment in parallel, prefetch.

    Every training batch carries its own random seed from a seeded stream that changes each
    epoch, and augmentation uses stateless random ops only, so the same config and seed give
    the same batches however the parallel map is scheduled.
    ``strength``: a scalar ``tf.Variable`` that scales the augmentation (see
    :func:`aug_strength`); Keras starts a new iterator every epoch, after ``on_epoch_begin``,
    so a value set there holds for the whole epoch. None: full strength.
    """
    import tensorflow as tf

    # Shuffle and batch indices, then gather whole batches: far cheaper than shuffling and
    # batching 48x48 tensors one by one.
    pixels = tf.constant(images[..., None])
    onehot = tf.one_hot(labels, num_classes) * (1 - cfg.label_smoothing) + cfg.label_smoothing / num_classes
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size).map(lambda idx: (tf.cast(tf.gather(pixels, idx), tf.float32), tf.gather(onehot, idx)),
                                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    augment = build_augmenter(cfg) if training else None
    if augment is not None:
        seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
        k = 1.0 if strength is None else strength
        ds = tf.data.Dataset.zip(ds, seeds).map(lambda xy, seed: (augment(xy[0], seed, k), xy[1]),
                                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def aug_strength(cfg: TrainConfig, epoch: int) -> float:
    """Augmentation strength of an epoch (0-based): ramps from 0 to 1 over ``aug_warmup_epochs``."""
    return min(1.0, epoch / cfg.aug_warmup_epochs) if cfg.aug_warmup_epochs else 1.0


def build_augmenter(cfg: TrainConfig) -> Callable | None:
    """Return ``augment(x, seed, strength=1.0)`` for a float batch (N, 48, 48, 1), or None if nothing is on.

    Flip, then one affine warp that combines rotation, zoom and translation (one resampling
    instead of three: sharper and cheaper), then random erasing. Random crops of ``cfg.crop``
    pixels are shifts of up to ``(48 - crop) / 2`` before the centre crop inside the model.
    ``strength`` (0 to 1) scales every range and the erasing probability; flips stay as they are.
    """
    import tensorflow as tf

    shift = (48 - cfg.crop) / 2  # pixels
    rot = np.deg2rad(cfg.rotation)
    if not (cfg.flip or rot or cfg.zoom or cfg.translate or shift or cfg.erase):
        return None

    def augment(x, seed, strength=1.0):
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        k = tf.cast(strength, tf.float32)
        s = tf.random.experimental.stateless_split(seed, num=6)
        if cfg.flip:
            flip = tf.random.stateless_uniform([n], s[0]) < 0.5
            x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        if rot or cfg.zoom or cfg.translate or shift:
            angle = k * tf.random.stateless_uniform([n], s[1], -rot, rot) if rot else tf.zeros([n])
            scale = 1 + k * tf.random.stateless_uniform([n], s[2], -cfg.zoom, cfg.zoom)
            size = tf.cast(tf.stack([w, h]), tf.float32)
            move = k * tf.random.stateless_uniform([n, 2], s[3], -1, 1) * (cfg.translate * size + shift)
            # output pixel p samples input M (p - c - t) + c, M = rotation / scale
            cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
            c = (size - 1) / 2
            px, py = c[0] + move[:, 0], c[1] + move[:, 1]
            transform = tf.stack([cos, -sin, c[0] - cos * px + sin * py,
                                  sin, cos, c[1] - sin * px - cos * py,
                                  tf.zeros([n]), tf.zeros([n])], axis=1)
            x = tf.raw_ops.ImageProjectiveTransformV3(images=x, transforms=transform, output_shape=[h, w],
                                                      fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
        if cfg.erase:
            x = random_erase(x, cfg.erase * k, s[4])
        return x

    return augment


def random_erase(x, prob: float, seed):
    """Random erasing (Zhong et al. 2017): fill a random rectangle with noise in some images."""
    import tensorflow as tf

    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    s = tf.random.experimental.stateless_split(seed, num=6)
    area = tf.random.stateless_uniform([n], s[0], 0.02, 0.2)
    ratio = tf.exp(tf.random.stateless_uniform([n], s[1], np.log(0.3), np.log(3.3)))
    eh = tf.cast(tf.sqrt(area * ratio) * tf.cast(h, tf.float32), tf.int32)
    ew = tf.cast(tf.sqrt(area / ratio) * tf.cast(w, tf.float32), tf.int32)
    eh, ew = tf.clip_by_value(eh, 1, h), tf.clip_by_value(ew, 1, w)
    top = tf.cast(tf.random.stateless_uniform([n], s[2]) * tf.cast(h - eh + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.stateless_uniform([n], s[3]) * tf.cast(w - ew + 1, tf.float32), tf.int32)
    rows = tf.range(h)[None, :, None]
    cols = tf.range(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
    mask = inside & (tf.random.stateless_uniform([n], s[4]) < prob)[:, None, None]
    noise = tf.random.stateless_uniform(tf.shape(x), s[5], 0.0, 255.0)
    return tf.where(mask[..., None], noise, x)


# ------------------------------------------------------------------- optimisation
def make_optimizer(cfg: TrainConfig):
    """The optimizer of a config; the inverse-time schedule is per iteration, so it lives inside it."""
    import keras

    lr = cfg.learning_rate
    if cfg.schedule == "inverse-time":
        lr = keras.optimizers.schedules.InverseTimeDecay(lr, decay_steps=1, decay_rate=cfg.lr_decay)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                    weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=cfg.weight_decay or None)
    return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay or 0.004)


def scheduled_lr(cfg: TrainConfig, epoch: int) -> float | None:
    """Learning rate of an epoch for the epoch-wise schedules (None: left to plateau/constant)."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.learning_rate * (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "step":
        return cfg.learning_rate * cfg.step_gamma ** (epoch // cfg.step_epochs)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        t = (epoch - cfg.warmup_epochs) / span
        return cfg.learning_rate * 0.5 * (1 + np.cos(np.pi * t))
    if cfg.warmup_epochs and epoch == cfg.warmup_epochs:
        return cfg.learning_rate
    return None


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'balanced' weights n / (k * n_c), as scikit-learn computes them."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {i: float(len(labels) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _callbacks(cfg, run_dir: Path, on_epoch: Callable | None, should_stop: Callable | None,
               on_batch: Callable | None = None, strength=None):
    import keras

    class Schedule(keras.callbacks.Callback):
        """Epoch-wise learning rate, and the augmentation strength the input pipeline reads."""

        def on_epoch_begin(self, epoch, logs=None):
            lr = scheduled_lr(cfg, epoch)
            if lr is not None:
                self.model.optimizer.learning_rate.assign(lr)
            if strength is not None:
                strength.assign(aug_strength(cfg, epoch))

    class Recorder(keras.callbacks.Callback):
        """Checkpoint first, then append the metrics line, so a crash never records an epoch
        whose checkpoint is missing (resume truncates the history to the checkpoint).
        Also the stop hook: ``should_stop`` is polled after every batch."""

        stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.epoch = time.perf_counter(), epoch

        def on_train_batch_end(self, batch, logs=None):
            if on_batch is not None:
                on_batch(self.epoch, batch + 1, self.params.get("steps") or 0)
            if should_stop is not None and should_stop():
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if self.stopped:  # Keras still ends the cut-short epoch: it must not count as done
                return
            logs = dict(logs or {})
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
                   "lr": float(np.asarray(self.model.optimizer.learning_rate)),
                   **({"aug_strength": aug_strength(cfg, epoch)} if cfg.aug_warmup_epochs else {}),
                   "epoch_seconds": round(time.perf_counter() - self.t0, 3)}
            best = max([r.get("val_accuracy", -1) for r in read_metrics(run_dir)] or [-1])
            if row.get("val_accuracy", 0) > best:
                _save_model(self.model, run_dir / BEST)
            _save_model(self.model, run_dir / LAST)
            _write_json(run_dir / "state.json", {"epoch": epoch + 1})
            with open(run_dir / METRICS, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if on_epoch is not None:
                on_epoch(epoch + 1, cfg.epochs, row)

    class Plateau(keras.callbacks.ReduceLROnPlateau):
        """Reduce-on-plateau that, on resume, picks up its best score and patience count from
        the recorded history instead of starting afresh."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            for row in read_metrics(run_dir):  # replay; the reduced rates are in the optimizer state
                value = row.get("val_accuracy")
                if value is None:
                    continue
                if self.best is None or value > self.best:
                    self.best, self.wait = value, 0
                else:
                    self.wait += 1
                    if self.wait >= self.patience:
                        self.wait = 0

    cbs = [Schedule(), Recorder()]
    if cfg.schedule == "plateau":
        cbs.insert(1, Plateau("val_accuracy", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                              mode="max", verbose=0))
    return cbs


def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({len(gpus)})" if gpus else f"CPU ({os.cpu_count()} cores)"


def _setup_gpu() -> None:
    """Memory growth (several jobs can share a card) and mixed precision, on GPUs only."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")


def train(cfg: TrainConfig | None = None, run_dir: str | Path | None = None, *, resume: bool = False,
          on_epoch: Callable | None = None, should_stop: Callable | None = None,
          on_batch: Callable | None = None, verbose: int = 0) -> Path:
    """Train a model and leave a complete run directory.

    Args:
        cfg: the configuration (read from ``run_dir/config.json`` when resuming).
        run_dir: where to write; a new folder under ``data/runs`` when None.
        resume: continue ``run_dir`` from its last checkpoint, with the optimizer state and
            epoch counter; the metric history continues without gaps or duplicates.
        on_epoch: called as ``on_epoch(epoch, total, metrics)`` after every epoch.
        should_stop: polled after every batch; returning True stops the run cleanly.
        on_batch: called as ``on_batch(epoch_index, step, steps)`` after every training batch.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The run directory.

    Raises:
        FerError: bad configuration, data or checkpoint.
    """
    import keras
    import tensorflow as tf

    from .models import create_model

    if resume:
        if run_dir is None or not (Path(run_dir) / "config.json").exists():
            raise ConfigError(f"Cannot resume {run_dir}: it has no config.json.")
        run_dir = Path(run_dir)
        cfg = TrainConfig.load(run_dir / "config.json")
    else:
        cfg = (cfg or TrainConfig()).validate()
        run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "state.json").exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it or choose another folder.")
        cfg.save(run_dir / "config.json")

    _setup_gpu()
    keras.utils.set_random_seed(cfg.seed)
    ds = load_dataset(cfg.data, merge=cfg.merge)
    tr, va = ds.subset("Training"), ds.subset("PublicTest")
    if len(tr) == 0 or len(va) == 0:
        raise ConfigError(f"{cfg.data}: the Training and PublicTest splits must both have images.")
    _write_json(run_dir / "classes.json", list(ds.class_names))
    _write_json(run_dir / "versions.json", _versions())

    start_epoch = 0
    if resume and (run_dir / LAST).exists():
        start_epoch = json.loads((run_dir / "state.json").read_text())["epoch"]
        model = keras.saving.load_model(run_dir / LAST)
        rows = read_metrics(run_dir)[:start_epoch]  # drop epochs recorded after the checkpoint
        (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        (run_dir / METRICS).write_text("")
        model = create_model(cfg.arch, ds.num_classes, crop=cfg.crop, **cfg.arch_options())
        if cfg.init_from:
            _init_weights(model, cfg.init_from)
        model.compile(make_optimizer(cfg), loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])

    info = {"data_source": ds.source, "merge": ds.merge, "num_train": len(tr), "num_val": len(va),
            "params": int(model.count_params()),
            "device": _device(), "status": "running", "started": time.time(), "start_epoch": start_epoch}
    _write_json(run_dir / "run.json", info)
    t0 = time.perf_counter()
    if start_epoch < cfg.epochs:
        strength = tf.Variable(aug_strength(cfg, start_epoch), trainable=False) if cfg.aug_warmup_epochs else None
        model.fit(make_input(tr.images, tr.labels, cfg, ds.num_classes, True, strength), epochs=cfg.epochs,
                  initial_epoch=start_epoch, validation_data=make_input(va.images, va.labels, cfg, ds.num_classes, False),
                  class_weight=class_weights(tr.labels, ds.num_classes) if cfg.class_weight == "balanced" else None,
                  callbacks=_callbacks(cfg, run_dir, on_epoch, should_stop, on_batch, strength), verbose=verbose,
                  shuffle=False)
    done = len(read_metrics(run_dir))
    status = "finished" if done >= cfg.epochs else "stopped"
    if status == "finished":
        best = keras.saving.load_model(run_dir / BEST) if (run_dir / BEST).exists() else model
        if cfg.recalibrate_bn:  # batch-norm statistics followed the augmented batches; the model will see clean faces
            info[RECORD] = {**recalibrate_if_better(best, tr.images, va.images, va.labels, seed=cfg.seed,
                                                    log=print if verbose else lambda *a: None), "by": "train"}
        _save_model(best, run_dir / FINAL)
    info.update(status=status, finished=time.time(), train_seconds=round(time.perf_counter() - t0, 2),
                epochs_done=done)
    _write_json(run_dir / "run.json", info)
    return run_dir


def _init_weights(model, source: str) -> None:
    """Copy the weights of a trained model (file, run directory or run name) into ``model``.

    Raises:
        ConfigError: the source cannot be found or loaded, or its layers do not match.
    """
    from .infer import load_model, resolve_model

    try:
        src = load_model(resolve_model(source))
    except FerError as exc:
        raise ConfigError(f"init_from: {exc}") from None
    mine, theirs = model.get_weights(), src.get_weights()
    if [w.shape for w in mine] != [w.shape for w in theirs]:
        raise ConfigError(f"init_from {source!r}: its architecture ({src.count_params():,} parameters) differs from "
                          f"this run's ({model.count_params():,}); start from a model of the same arch and crop.")
    model.set_weights(theirs)
