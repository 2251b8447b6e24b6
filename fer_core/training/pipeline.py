"""The training input: a tf.data pipeline of faces and one-hot labels, with the augmentation a
configuration asks for (flips, shifts, rotations, zoom, erasing), ramped up over the first epochs."""

from __future__ import annotations

from typing import Callable

import numpy as np

from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.distill import with_teacher


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
    if teacher is not None:
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
