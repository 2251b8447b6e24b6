"""The training input: faces and one-hot labels, with the augmentation a configuration asks for
(flips, shifts, rotations, zoom, erasing), ramped up over the first epochs.

:func:`prepare` sets up what ``model.fit`` runs for the process's Keras backend. Under
TensorFlow: a tf.data pipeline that augments (and asks the teacher) in parallel, beside the
training step. Under JAX or PyTorch, where nothing may import TensorFlow: NumPy batches from a
``keras.utils.PyDataset`` and the augmentation inside the training step
(:mod:`fer_core.training.augment`). Both are deterministic for a config and seed, resumed or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fer_core.runs.trainconfig import TrainConfig


@dataclass
class Fitting:
    """What ``fit`` runs: ``model`` (the network itself, or the network wrapped with the
    augmentation and teacher, compiled with the network's optimizer), the training and validation
    data, and ``begin_epoch(epoch)``, to call when an epoch begins (the augmentation's strength,
    and under other backends its random stream)."""

    model: object
    train: object
    validation: object
    begin_epoch: Callable[[int], None]


def prepare(net, train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], cfg: TrainConfig,
            num_classes: int, start_epoch: int = 0, teacher=None, compile: Callable | None = None,
            in_step: bool | None = None) -> Fitting:
    """The inputs and the model to fit ``net`` (compiled) on ``(faces, labels)`` pairs of uint8
    faces (N, 48, 48) and class indices; ``compile(model, optimizer)`` compiles a wrapper the
    way ``net`` is compiled. ``in_step``: augment inside the training step (None: only when the
    backend is not TensorFlow; True under TensorFlow is for comparing, see ``bench_train.py``)."""
    import keras

    if in_step is None:
        in_step = keras.backend.backend() != "tensorflow"
    if not in_step:
        import tensorflow as tf

        strength = tf.Variable(aug_strength(cfg, start_epoch), trainable=False) if cfg.aug_warmup_epochs else None
        return Fitting(net, make_input(*train, cfg, num_classes, True, strength, teacher),
                       make_input(*validation, cfg, num_classes, False, teacher=teacher).cache(),
                       lambda epoch: strength is not None and strength.assign(aug_strength(cfg, epoch)))
    from fer_core.training import augment as neutral  # imports Keras

    model, augment = neutral.training_model(net, cfg, teacher)
    compile(model, net.optimizer)

    def begin_epoch(epoch: int) -> None:
        if augment is not None:
            augment.start_epoch(epoch, aug_strength(cfg, epoch))

    onehot = smoothed_onehot(num_classes, cfg.label_smoothing)
    val_x, val_y = validation
    return Fitting(model, neutral.FaceBatches(train[0], onehot[train[1]], cfg.batch_size, seed=cfg.seed,
                                              epoch=start_epoch),
                   neutral.FaceBatches(val_x, onehot[val_y], cfg.batch_size), begin_epoch)


def smoothed_onehot(num_classes: int, smoothing: float) -> np.ndarray:
    """Row ``c``: the (label-smoothed) one-hot target of class ``c``."""
    return (np.eye(num_classes) * (1 - smoothing) + smoothing / num_classes).astype(np.float32)


def make_input(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, num_classes: int, training: bool,
               strength=None, teacher=None):
    """Build the tf.data pipeline: shuffle, batch, augment in parallel, prefetch.

    Every training batch carries its own random seed from a seeded stream that changes each
    epoch, and augmentation uses stateless random ops only, so the same config and seed give
    the same batches however the parallel map is scheduled.
    ``strength``: a scalar ``tf.Variable`` that scales the augmentation (see
    :func:`aug_strength`); Keras starts a new iterator every epoch, after ``on_epoch_begin``,
    so a value set there holds for the whole epoch. None: full strength.
    ``teacher``: a model whose answers on each (augmented) batch join its labels, for
    distillation (see :func:`fer_core.training.distill.with_teacher`).
    """
    import tensorflow as tf

    # Shuffle and batch indices, then gather whole batches: far cheaper than shuffling and
    # batching 48x48 tensors one by one.
    pixels = tf.constant(images[..., None])
    onehot = tf.gather(smoothed_onehot(num_classes, cfg.label_smoothing), labels)
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
    if teacher is not None:
        from fer_core.training.distill import with_teacher  # imports Keras

        ds = ds.map(with_teacher(teacher))  # one call at a time: its own ops use every core
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
