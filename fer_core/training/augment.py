"""Augmentation as Keras ops inside the training step: how every backend but TensorFlow trains.

Under TensorFlow the faces are augmented in the tf.data pipeline (:mod:`.pipeline`). Under JAX
or PyTorch, which must not import TensorFlow, the faces arrive as NumPy batches and an
:class:`Augment` layer in front of the network does the same augmentation (flip, one affine
warp for rotation, zoom, translation and the random-crop shift, then random erasing, all scaled
by the epoch's strength) with backend-neutral ops, inside the compiled training step, so on the
accelerator when there is one. A distillation teacher sits behind it inside the step too, and
answers for the very batch the student sees (flip-averaged), as the tf.data path does.

:func:`training_model` wraps the network for ``fit`` only: ``faces -> Augment -> network``,
plus ``-> teacher`` when distilling (its answers ride along as extra output columns, which
:class:`fer_core.training.distill` losses read). The wrapper shares the network's variables and
its optimizer, so a checkpoint saves the network alone, with that optimizer: the same files as
under TensorFlow, which any backend loads. The augmentation's random stream restarts from
``(seed, epoch)`` at every epoch (:meth:`Augment.start_epoch`), and so do the network's own
random layers (:func:`reseed`, on every backend), so a resumed run goes on as an unbroken run
would have. Under those backends the faces come in :class:`FaceBatches`, shuffled per epoch.

This module imports Keras at its top: import it inside functions (:func:`fer_core.training.pipeline.prepare`
does, for the backends that need it).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fer_core.config import IMAGE_SIZE
from fer_core.models.build import all_layers
from fer_core.runs.trainconfig import TrainConfig


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> np.ndarray:
    """A Keras seed-generator state for an epoch: independent for each ``(seed, epoch, stream)``
    (``[seed, epoch]`` itself would not be: Keras counts up the second number, so consecutive
    epochs would share all but one draw)."""
    return np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)


def reseed(model, seed: int, epoch: int) -> int:
    """Restart every random layer of ``model`` (dropout, noise; nested models too) at its own
    stream of ``(seed, epoch)``, so an epoch's randomness does not depend on whether the run was
    resumed before it. Returns how many were reseeded."""
    count = 0
    for layer in all_layers(model):
        generator = getattr(layer, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            count += 1
            generator.state.assign(epoch_seed(seed, epoch, count).astype(generator.state.dtype))
    return count


def augments(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` asks for any augmentation at all."""
    return bool(cfg.flip or cfg.rotation or cfg.zoom or cfg.translate or cfg.crop < IMAGE_SIZE or cfg.erase)


class Augment(keras.layers.Layer):
    """The training-time augmentation of a config; the identity at inference."""

    def __init__(self, cfg: TrainConfig, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.flip, self.zoom, self.translate, self.erase = cfg.flip, cfg.zoom, cfg.translate, cfg.erase
        self.rotation = float(np.deg2rad(cfg.rotation))
        self.shift = (IMAGE_SIZE - cfg.crop) / 2  # pixels: random crops are shifts before the centre crop
        self.base_seed = int(cfg.seed)
        self.seed_generator = keras.random.SeedGenerator(cfg.seed)
        self.strength = self.add_weight(shape=(), initializer="ones", trainable=False, name="strength")

    def start_epoch(self, epoch: int, strength: float) -> None:
        """Set the epoch's strength, and restart the random stream at ``(seed, epoch)``."""
        self.strength.assign(float(strength))
        state = self.seed_generator.state
        state.assign(epoch_seed(self.base_seed, epoch).astype(state.dtype))

    def call(self, x, training=None):
        if not training:
            return x
        n, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
        k = self.strength

        def uniform(shape, low=0.0, high=1.0):
            return keras.random.uniform(shape, low, high, seed=self.seed_generator)

        if self.flip:
            x = ops.where((uniform((n,)) < 0.5)[:, None, None, None], ops.flip(x, axis=2), x)
        if self.rotation or self.zoom or self.translate or self.shift:
            angle = k * uniform((n,), -self.rotation, self.rotation) if self.rotation else ops.zeros((n,))
            scale = 1 + k * uniform((n,), -self.zoom, self.zoom) if self.zoom else ops.ones((n,))
            mx = k * uniform((n,), -1.0, 1.0) * (self.translate * w + self.shift)
            my = k * uniform((n,), -1.0, 1.0) * (self.translate * h + self.shift)
            # output pixel p samples input M (p - c - t) + c, M = rotation / scale
            cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
            cx, cy = (w - 1) / 2, (h - 1) / 2
            px, py = cx + mx, cy + my
            zero = ops.zeros((n,))
            transform = ops.stack([cos, -sin, cx - cos * px + sin * py, sin, cos, cy - sin * px - cos * py,
                                   zero, zero], axis=1)
            x = ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="reflect")
        if self.erase:
            x = self._erase(x, n, h, w, self.erase * k, uniform)
        return x

    @staticmethod
    def _erase(x, n, h, w, prob, uniform):
        """Random erasing (Zhong et al. 2017): a random rectangle filled with noise, in some faces."""
        area = uniform((n,), 0.02, 0.2)
        ratio = ops.exp(uniform((n,), float(np.log(0.3)), float(np.log(3.3))))
        eh = ops.clip(ops.floor(ops.sqrt(area * ratio) * h), 1, h)
        ew = ops.clip(ops.floor(ops.sqrt(area / ratio) * w), 1, w)
        top = ops.floor(uniform((n,)) * (h - eh + 1))
        left = ops.floor(uniform((n,)) * (w - ew + 1))
        rows = ops.arange(h, dtype="float32")[None, :, None]
        cols = ops.arange(w, dtype="float32")[None, None, :]
        inside = ops.logical_and(
            ops.logical_and(rows >= top[:, None, None], rows < (top + eh)[:, None, None]),
            ops.logical_and(cols >= left[:, None, None], cols < (left + ew)[:, None, None]))
        mask = ops.logical_and(inside, (uniform((n,)) < prob)[:, None, None])
        noise = uniform(ops.shape(x), 0.0, 255.0)
        return ops.where(mask[..., None], noise, x)

class TeacherAnswers(keras.layers.Layer):
    """A frozen teacher's probabilities for the faces and their mirror images, averaged."""

    def __init__(self, teacher, **kwargs):
        super().__init__(dtype="float32", trainable=False, **kwargs)
        self.teacher = teacher
        teacher.trainable = False

    def call(self, x):
        p = self.teacher(x, training=False) + self.teacher(ops.flip(x, axis=2), training=False)
        return ops.cast(p, "float32") / 2.0


def training_model(net, cfg: TrainConfig, teacher=None):
    """Wrap a network for ``fit``: ``(model, augment)``, ``model`` not compiled yet.

    ``model`` augments its input in the training step, runs ``net`` and, with a ``teacher``,
    appends the teacher's answers as ``num_classes`` more output columns. Compile it with
    ``net``'s own optimizer: training it then trains ``net``, and a checkpoint of ``net`` holds
    the optimizer state. ``augment``: the :class:`Augment` layer (call its ``start_epoch`` at the
    beginning of each epoch), or None when ``cfg`` augments nothing.
    """
    inputs = keras.Input(net.input_shape[1:], name="faces")
    augment = Augment(cfg, name="augment") if augments(cfg) else None
    x = augment(inputs) if augment is not None else inputs
    out = net(x)
    if teacher is not None:
        out = keras.layers.Concatenate(dtype="float32", name="with_teacher")(
            [keras.layers.Activation("linear", dtype="float32")(out), TeacherAnswers(teacher)(x)])
    return keras.Model(inputs, out, name=f"training_{net.name}"), augment


class FaceBatches(keras.utils.PyDataset):
    """Float32 face batches (N, 48, 48, 1) and their targets.

    With a ``seed`` the order is shuffled per epoch, from ``(seed, epoch)`` (``epoch``: the
    first one it serves), so a resumed run gets the batches an unbroken run would have; without,
    it keeps the given order. Batches are gathered by ``workers`` threads ahead of the step.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, batch_size: int, seed: int | None = None,
                 epoch: int = 0, workers: int = 2):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.images, self.targets, self.batch_size, self.seed = images, targets, batch_size, seed
        self.epoch = epoch
        self.order = self._order()

    def _order(self):
        if self.seed is None:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.images[idx][..., None].astype(np.float32), self.targets[idx]

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()
