"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's soft targets.

The teacher (any model FER Studio can load: the shipped ensemble, a run, a ``.keras`` file) runs
inside the input pipeline on the very batch the student sees, after augmentation, and its answer
is averaged with its answer for the mirrored faces (the default test-time flip). Each batch's
target is then ``[hard labels | teacher probabilities]``, so the student stays an ordinary
functional model trained by ``model.fit``, and what is saved is the student alone. (Under JAX or
PyTorch the teacher answers inside the training step instead, as extra output columns of the
model being fitted: see :mod:`fer_core.training.augment`; the loss reads either layout.)

The loss mixes the two: ``(1 - soft_weight) * CE(hard, student) + soft_weight * T^2 *
KL(teacher_T || student_T)``, where ``p_T = softmax(log p / T)`` softens both distributions by
the temperature ``T`` (models here end in a softmax, and ``log p`` is the logits up to a
constant, so this is the usual ``softmax(z / T)``). ``T^2`` keeps the soft term's gradients on
the hard term's scale. Loss and metric are registered Keras objects, so checkpoints reload (and
resume) without anything else; inference loads the student uncompiled.

This module imports Keras at its top, and registers the loss and metric with Keras as it is
imported: import it inside functions, and before loading a distilled run's checkpoint.
"""

from __future__ import annotations

import keras
from keras import ops

from fer_core.errors import ConfigError, FerError
from fer_core.inference.loader import load_model, resolve_model

_EPS = 1e-7


def distillation_loss(num_classes: int, temperature: float, soft_weight: float):
    """The Keras loss for targets ``[hard | teacher]`` (``2 * num_classes`` columns)."""
    return DistillationLoss(num_classes=num_classes, temperature=temperature, soft_weight=soft_weight)


def hard_label_accuracy(num_classes: int):
    """Accuracy against the hard labels of ``[hard | teacher]`` targets, logged as ``accuracy``."""
    return HardLabelAccuracy(num_classes=num_classes)


def teacher_columns(y_true, y_pred, num_classes: int):
    """The teacher's answers of a batch: the targets' last columns (the tf.data path puts them
    there), else the outputs' (under other backends the teacher runs in the training step, see
    :mod:`fer_core.training.augment`)."""
    return y_true[:, num_classes:] if y_true.shape[-1] == 2 * num_classes else y_pred[:, num_classes:]


@keras.saving.register_keras_serializable("fer_core")
class DistillationLoss(keras.losses.Loss):
    def __init__(self, num_classes=7, temperature=4.0, soft_weight=0.9, name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.temperature, self.soft_weight = int(num_classes), float(temperature), float(soft_weight)

    def call(self, y_true, y_pred):
        k, t = self.num_classes, self.temperature
        hard, soft = y_true[:, :k], teacher_columns(y_true, y_pred, k)
        y_pred = ops.clip(y_pred[:, :k], _EPS, 1.0)
        ce = -ops.sum(hard * ops.log(y_pred), axis=-1)
        teacher = ops.softmax(ops.log(ops.clip(soft, _EPS, 1.0)) / t, axis=-1)
        student = ops.log_softmax(ops.log(y_pred) / t, axis=-1)
        kl = ops.sum(teacher * (ops.log(ops.clip(teacher, _EPS, 1.0)) - student), axis=-1)
        return (1.0 - self.soft_weight) * ce + self.soft_weight * t * t * kl

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "temperature": self.temperature,
                "soft_weight": self.soft_weight}


@keras.saving.register_keras_serializable("fer_core")
class HardLabelAccuracy(keras.metrics.Mean):
    def __init__(self, num_classes=7, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        k = self.num_classes
        hit = ops.equal(ops.argmax(y_true[:, :k], axis=-1), ops.argmax(y_pred[:, :k], axis=-1))
        return super().update_state(ops.cast(hit, self.dtype), sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype}


def load_teacher(spec: str, num_classes: int):
    """Load the teacher a config names, checking it answers for the run's classes.

    Raises:
        ConfigError (field ``teacher``): not found, unreadable, or another number of classes.
    """
    try:
        model = load_model(resolve_model(spec))
    except FerError as exc:
        raise ConfigError(f"teacher: {exc}", field="teacher") from None
    if model.output_shape[-1] != num_classes:
        raise ConfigError(f"teacher {spec!r} answers for {model.output_shape[-1]} classes; this run's data has "
                          f"{num_classes}. Choose a teacher trained with the same merge.", field="teacher")
    return model


def with_teacher(teacher):
    """A tf.data map ``(faces, hard) -> (faces, [hard | teacher])``: the teacher's probabilities
    for the faces as they are and mirrored, averaged."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def answer(x):
        p = teacher(x, training=False) + teacher(tf.reverse(x, axis=[2]), training=False)
        return tf.cast(p, tf.float32) / 2.0

    def attach(x, y):
        return x, tf.concat([y, answer(x)], axis=-1)

    return attach
