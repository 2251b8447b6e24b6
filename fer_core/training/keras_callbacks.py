"""The Keras callbacks of a run: the epoch's schedule, the commit of every epoch, the plateau.

This module imports Keras at its top: the trainer imports it inside its functions, as it
imports Keras itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from fer_core.runs import rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training import tblog
from fer_core.training.augment import reseed
from fer_core.training.dynamics import DynamicsLog
from fer_core.training.hooks import TrainHooks
from fer_core.training.pipeline import aug_strength


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


def training_callbacks(cfg: TrainConfig, run_dir: Path, net, begin_epoch: Callable[[int], None], hooks: TrainHooks,
                       dynamics: DynamicsLog | None = None) -> list:
    """The callbacks of a run. ``net``: the network that is saved (the fitted model may wrap it, see
    :func:`fer_core.training.pipeline.prepare`); ``begin_epoch``: the input pipeline's, called as
    each epoch begins."""
    cbs = [Schedule(cfg, net, begin_epoch), Recorder(cfg, run_dir, net, hooks, dynamics)]
    if cfg.schedule == "plateau":
        cbs.insert(1, Plateau(run_dir, monitor="val_accuracy", factor=cfg.plateau_factor,
                              patience=cfg.plateau_patience, mode="max", verbose=0))
    return cbs


class Schedule(keras.callbacks.Callback):
    """Epoch-wise learning rate, and the augmentation's strength (and random stream)."""

    def __init__(self, cfg: TrainConfig, net, begin_epoch: Callable[[int], None]):
        super().__init__()
        self.cfg, self.net, self.begin_epoch = cfg, net, begin_epoch

    def on_epoch_begin(self, epoch, logs=None):
        lr = scheduled_lr(self.cfg, epoch)
        if lr is not None:
            self.model.optimizer.learning_rate.assign(lr)
        self.begin_epoch(epoch)
        reseed(self.net, self.cfg.seed, epoch)  # dropout: the same masks resumed or not


class Recorder(keras.callbacks.Callback):
    """Commits every finished epoch to the run directory (checkpoints and metrics in one
    crash-consistent record, see :func:`rundir.commit_epoch`), and calls the hooks; ``should_stop``
    is polled after every batch."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, net, hooks: TrainHooks, dynamics: DynamicsLog | None):
        super().__init__()
        self.cfg, self.run_dir, self.net, self.hooks, self.dynamics = cfg, run_dir, net, hooks, dynamics
        self.stopped, self.events, self.epoch, self.t0 = False, None, 0, 0.0

    def on_train_begin(self, logs=None):
        self.events = tblog.EpochLog(self.run_dir) if tblog.enabled() else None

    def on_train_end(self, logs=None):
        if self.events is not None:
            self.events.close()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.epoch = time.perf_counter(), epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.hooks.on_batch is not None:
            self.hooks.on_batch(self.epoch, batch + 1, self.params.get("steps") or 0)
        if self.hooks.should_stop is not None and self.hooks.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        cfg, hooks = self.cfg, self.hooks
        if self.stopped:  # Keras still ends the cut-short epoch: it must not count as done, nor be logged
            if hooks.log is not None:
                hooks.log(f"Epoch {epoch + 1}/{cfg.epochs}: stopped during the epoch; it is not saved (the run "
                          f"resumes from epoch {epoch}).")
            return
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
               "lr": float(np.asarray(self.model.optimizer.learning_rate)),
               **({"aug_strength": aug_strength(cfg, epoch)} if cfg.aug_warmup_epochs else {}),
               "epoch_seconds": round(time.perf_counter() - self.t0, 3), "time": round(time.time(), 3)}
        if hooks.before_commit is not None:
            hooks.before_commit(epoch + 1)
        if self.dynamics is not None:  # written first, read only up to the committed epoch
            t0 = time.perf_counter()
            self.dynamics.record(epoch + 1, self.net)
            row["dynamics_seconds"] = round(time.perf_counter() - t0, 3)
        rundir.commit_epoch(self.run_dir, self.net, row)
        if hooks.log is not None:  # one line per saved epoch, as Keras' own (which would also log a cut-short one)
            hooks.log(f"Epoch {epoch + 1}/{cfg.epochs} - {row['epoch_seconds']:.0f}s - " + " - ".join(
                f"{k}: {row[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row))
        if self.events is not None:
            self.events.write(row)
        if hooks.on_epoch is not None:
            hooks.on_epoch(epoch + 1, cfg.epochs, row)


class Plateau(keras.callbacks.ReduceLROnPlateau):
    """Reduce-on-plateau that, on resume, picks up its best score and patience count from
    the recorded history instead of starting afresh."""

    def __init__(self, run_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.run_dir = run_dir

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for row in rundir.read_metrics(self.run_dir):  # replay; the reduced rates are in the optimizer state
            value = row.get("val_accuracy")
            if value is None:
                continue
            if self.best is None or value > self.best:
                self.best, self.wait = value, 0
            else:
                self.wait += 1
                if self.wait >= self.patience:
                    self.wait = 0
