"""Training: ``model.fit`` with callbacks on the input pipeline (:mod:`.pipeline`), and resume.

What a run leaves on disk, and how an epoch is committed so that a crash never loses or
duplicates one, is :mod:`fer_core.runs.rundir`'s business; this module only calls it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from fer_core.data.loading import load_dataset
from fer_core.device import accelerators, device_name, keras_backend, library_versions, setup_accelerators
from fer_core.errors import ConfigError, FerError
from fer_core.inference.loader import load_model, resolve_model
from fer_core.models.build import create_model
from fer_core.runs import recovery, rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.calibrate import recalibrate_if_better
from fer_core.training.dynamics import DynamicsLog
from fer_core.training.hooks import TrainHooks
from fer_core.training.pipeline import prepare


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


def compile_model(model, cfg: TrainConfig, num_classes: int, optimizer=None) -> None:
    """Compile for training: cross-entropy on the labels, or the distillation loss with a teacher.
    ``optimizer``: one already in use (another model's); None makes the config's."""
    import keras

    from fer_core.training import distill  # imports Keras

    if cfg.teacher:
        loss, metric = (distill.distillation_loss(num_classes, cfg.temperature, cfg.soft_weight),
                        distill.hard_label_accuracy(num_classes))
    else:
        loss, metric = keras.losses.CategoricalCrossentropy(), "accuracy"
    model.compile(optimizer or make_optimizer(cfg), loss=loss, metrics=[metric])


def estimate_epoch(cfg: TrainConfig, num_train: int, num_val: int, num_classes: int = 7, steps: int = 4) -> dict:
    """Measure how long one epoch of ``cfg`` will take here, before any job starts.

    The configured network and optimizer run a few real training steps (augmentation
    included) on random faces of the configured batch size, after two warm-up steps; an epoch
    is ``num_train / batch_size`` such steps plus the validation pass (``num_val`` faces,
    forward only, measured too), the teacher's answers included when distilling. Measured now, on
    this machine: jobs that run meanwhile slow it.

    Returns:
        ``{"epoch_seconds", "step_seconds", "steps_per_epoch", "val_seconds", "total_seconds"}``
        (``total_seconds`` for ``cfg.epochs`` epochs).
    """
    setup_accelerators()
    from fer_core.training import distill  # imports Keras

    model = create_model(cfg.arch, num_classes, crop=cfg.crop, **cfg.arch_options())
    compile_model(model, cfg, num_classes)
    teacher = distill.load_teacher(cfg.teacher, num_classes) if cfg.teacher else None
    rng = np.random.default_rng(0)
    n = cfg.batch_size * (steps + 2)
    faces, labels = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, num_classes, n)
    fitting = prepare(model, (faces, labels), (faces, labels), cfg, num_classes, teacher=teacher,
                      compile=lambda m, opt: compile_model(m, cfg, num_classes, opt))
    fitting.begin_epoch(0)
    for _ in range(2):  # the first fit builds and compiles the training step; the second is timed
        t0 = time.perf_counter()
        fitting.model.fit(fitting.train, verbose=0, shuffle=False)
    step = (time.perf_counter() - t0) / (steps + 2)
    t0 = time.perf_counter()
    model.predict(faces[..., None].astype("float32"), batch_size=cfg.batch_size, verbose=0)
    if teacher is not None:  # the validation faces' answers, computed once per run
        teacher.predict(faces[..., None].astype("float32"), batch_size=cfg.batch_size, verbose=0)
    val = (time.perf_counter() - t0) / n * num_val
    per_epoch = -(-num_train // cfg.batch_size)
    epoch = step * per_epoch + val
    return {"epoch_seconds": round(epoch, 1), "step_seconds": round(step, 4), "steps_per_epoch": per_epoch,
            "val_seconds": round(val, 1), "total_seconds": round(epoch * cfg.epochs)}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend for a reproducible run. Under TensorFlow this is
    Keras' own ``set_random_seed``; elsewhere the same without it, since that one imports
    TensorFlow whenever it is installed (Keras' unseeded initializers draw from Python's seed)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    if backend == "torch":
        import torch

        torch.manual_seed(seed)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'balanced' weights n / (k * n_c), as scikit-learn computes them."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {i: float(len(labels) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def train(cfg: TrainConfig | None = None, run_dir: str | Path | None = None, *, resume: bool = False,
          epochs: int | None = None, on_epoch: Callable | None = None, should_stop: Callable | None = None,
          on_batch: Callable | None = None, before_commit: Callable | None = None, verbose: int = 0) -> Path:
    """Train a model and leave a complete run directory.

    Args:
        cfg: the configuration, checked against the world where it was entered (see
            :mod:`fer_core.training.validation`); read from ``run_dir/config.json`` when resuming.
        run_dir: where to write; a new folder under ``data/runs`` when None.
        resume: continue ``run_dir`` from its last committed epoch, with the optimizer state;
            the metric history continues without gaps or duplicates.
        epochs: with ``resume``, extend the run to this many epochs in all (see :func:`extend`).
        on_epoch: called as ``on_epoch(epoch, total, metrics)`` after every committed epoch.
        should_stop: polled after every batch; returning True stops the run cleanly.
        on_batch: called as ``on_batch(epoch_index, step, steps)`` after every training batch.
        before_commit: called as ``before_commit(epoch)`` just before an epoch is written; a job's
            worker checks there that it still holds its lease (raising stops the run unwritten).
            These four travel on as one :class:`~fer_core.training.hooks.TrainHooks`.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The run directory.

    Raises:
        FerError: bad configuration, data or checkpoint, or another process writing the run.
    """
    if resume:
        if run_dir is None or not rundir.is_run(run_dir):
            raise ConfigError(f"Cannot resume {run_dir}: it is not a run directory (no config.json).")
        run_dir = Path(run_dir)
    else:
        cfg = cfg or TrainConfig()  # valid by construction, checked against the world where it was entered
        run_dir = Path(run_dir) if run_dir else rundir.new_run_dir(cfg.arch)
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"{run_dir}: already exists and is not a folder; choose another --out for the run.")
        run_dir.mkdir(parents=True, exist_ok=True)
        if rundir.has_started(run_dir):
            raise ConfigError(f"{run_dir} already holds a run; resume it or choose another folder.")
    with rundir.lock(run_dir):
        if resume:
            recovery.restore(run_dir)  # a damaged commit record is rebuilt or refused before anything changes
            check_backend(rundir.read_config(run_dir), run_dir)  # before an extension changes the run
            cfg = extend(run_dir, epochs) if epochs is not None else rundir.read_config(run_dir)
        else:
            cfg = check_backend(cfg, run_dir)
            rundir.write_config(run_dir, cfg)
        hooks = TrainHooks(on_epoch, should_stop, on_batch, before_commit,
                           log=(lambda line: print(line, flush=True)) if verbose == 2 else None)
        return _train_locked(cfg, run_dir, resume, hooks, verbose)


def check_backend(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """The config with its backend filled in (this process's, when it names none).

    Raises:
        ConfigError (field ``backend``): the config names another backend than this process runs.
    """
    here = keras_backend()
    if not cfg.backend:
        return replace(cfg, backend=here)
    if cfg.backend != here:
        raise ConfigError(f"{run_dir} trains under {cfg.backend}, and this process runs Keras on {here}: start it "
                          f"with KERAS_BACKEND={cfg.backend} ('train --backend {cfg.backend}' and jobs do that "
                          "themselves).", field="backend")
    return cfg


def extend(run_dir: str | Path, epochs: int) -> TrainConfig:
    """Raise a run's planned epochs to ``epochs`` (the run is then resumed to that many).

    The schedule continues as if ``epochs`` had been planned from the start: for ``cosine``
    the remaining epochs follow the cosine curve of an ``epochs``-long run (for a finished run
    the rate rises again, a warm restart); ``step``, ``plateau``, ``constant`` and
    ``inverse-time`` simply go on. The history keeps every epoch; ``run.json`` records the
    extension under ``extended``.

    Raises:
        ConfigError: ``epochs`` is not more than the epochs already done (or out of range).
    """
    cfg = rundir.read_config(run_dir)
    done = rundir.read_state(run_dir).epoch
    if epochs == cfg.epochs:
        return cfg
    problem = rundir.extension_problem(run_dir, epochs)
    if problem:
        raise ConfigError(f"{run_dir}: {problem}.")
    new = replace(cfg, epochs=epochs)
    rundir.write_config(run_dir, new)
    info = rundir.read_info(run_dir)
    rundir.update_info(run_dir, extended=[*info.get("extended", []), {"from": cfg.epochs, "to": epochs,
                                                                       "at_epoch": done, "when": time.time()}])
    return new


def _train_locked(cfg: TrainConfig, run_dir: Path, resume: bool, hooks: TrainHooks, verbose: int) -> Path:
    import keras

    # both import Keras; distill registers the loss and metric a distilled run's checkpoint names
    from fer_core.training import distill, keras_callbacks

    setup_accelerators()
    seed_everything(cfg.seed)
    ds = load_dataset(cfg.data, merge=cfg.merge)
    tr, va = ds.fit_splits()
    rundir.write_classes(run_dir, ds.class_names)
    rundir.write_versions(run_dir, library_versions())

    teacher = distill.load_teacher(cfg.teacher, ds.num_classes) if cfg.teacher else None
    state = recovery.restore(run_dir) if resume else None
    start_epoch = 0
    if state is not None and state.last:
        start_epoch = state.epoch
        model = rundir.load_checkpoint(run_dir / state.last)
    else:
        rundir.start_fresh(run_dir)
        model = create_model(cfg.arch, ds.num_classes, crop=cfg.crop, **cfg.arch_options())
        if cfg.init_from:
            _init_weights(model, cfg.init_from)
        compile_model(model, cfg, ds.num_classes)

    previous = rundir.read_info(run_dir)
    kept = (*rundir.SUBMITTED, "extended") if resume else rundir.SUBMITTED
    info = {**{k: previous[k] for k in kept if k in previous},
            "data_source": ds.source, "merge": ds.merge, "num_train": len(tr), "num_val": len(va),
            "params": int(model.count_params()), "device": device_name(accelerators()), "backend": keras.backend.backend(),
            "status": rundir.RunStatus.RUNNING.value, "started": time.time(), "start_epoch": start_epoch,
            "pid": os.getpid()}
    rundir.write_info(run_dir, info)
    t0 = time.perf_counter()
    if start_epoch < cfg.epochs:
        fitting = prepare(model, (tr.images, tr.labels), (va.images, va.labels), cfg, ds.num_classes, start_epoch,
                          teacher, compile=lambda m, opt: compile_model(m, cfg, ds.num_classes, opt))
        fitting.model.fit(
            fitting.train, epochs=cfg.epochs, initial_epoch=start_epoch, validation_data=fitting.validation,
            class_weight=class_weights(tr.labels, ds.num_classes) if cfg.class_weight == "balanced" else None,
            callbacks=keras_callbacks.training_callbacks(cfg, run_dir, model, fitting.begin_epoch, hooks,
                                                         DynamicsLog(run_dir, tr.images, tr.labels, start_epoch)),
            verbose=1 if verbose == 1 else 0, shuffle=False)
    done = rundir.read_state(run_dir).epoch
    status = (rundir.RunStatus.FINISHED if done >= cfg.epochs else rundir.RunStatus.STOPPED).value
    if hooks.before_commit is not None:  # a job's worker that lost its lease writes nothing more, even how it stopped
        hooks.before_commit(done)
    if status == rundir.RunStatus.FINISHED:
        best_file = rundir.checkpoint(run_dir, "best")
        best = rundir.load_checkpoint(best_file) if best_file else model
        if cfg.recalibrate_bn:  # batch-norm statistics followed the augmented batches; the model will see clean faces
            info[rundir.BN_RECORD] = {**recalibrate_if_better(best, tr.images, va.images, va.labels, seed=cfg.seed,
                                                              log=print if verbose else lambda *a: None), "by": "train"}
        elif verbose:
            print("batch-norm recalibration: off (recalibrate_bn is false); the checkpoint's statistics are kept")
        rundir.save_model(best, rundir.final_model(run_dir))
    info.update(status=status, finished=time.time(), train_seconds=round(time.perf_counter() - t0, 2),
                epochs_done=done)
    rundir.write_info(run_dir, info)
    return run_dir


def _init_weights(model, source: str) -> None:
    """Copy the weights of a trained model (file, run directory or run name) into ``model``.

    Raises:
        ConfigError: the source cannot be found or loaded, or its layers do not match.
    """
    try:
        src = load_model(resolve_model(source))
    except FerError as exc:
        raise ConfigError(f"init_from: {exc}") from None
    mine, theirs = model.get_weights(), src.get_weights()
    if [w.shape for w in mine] != [w.shape for w in theirs]:
        raise ConfigError(f"init_from {source!r}: its architecture ({src.count_params():,} parameters) differs from "
                          f"this run's ({model.count_params():,}); start from a model of the same arch and crop.")
    model.set_weights(theirs)
