"""Test-time augmentation for evaluation and prediction: none, horizontal flip, ten-crop.

Models take 48x48 faces and centre-crop inside, so a corner crop is made by shifting the face
by the crop margin (edge-padded) before the model's own centre crop: the model then sees
exactly the corner crop.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

import numpy as np

from fer_core.errors import ConfigError
from fer_core.models.ensemble import members as ensemble_members

TTA_MODES = ("none", "flip", "tencrop")
#: What every surface uses unless told otherwise (the CLI, every page, the model card):
#: horizontal flip, at a fifth of ten-crop's cost (2 views, not 10). On v1's PrivateTest it gave
#: nearly all of ten-crop's gain (none 67.68%, flip 69.94%, ten-crop 70.13%); on the shipped
#: three-member ensemble it beats ten-crop (71.41%, 72.03%, 71.61%).
DEFAULT_TTA = "flip"


def views(images: np.ndarray, mode: str, crop: int = 48) -> list[np.ndarray]:
    """Return the augmented copies of a batch (N, 48, 48) that TTA averages over.

    Raises:
        ConfigError: unknown mode.
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"TTA {mode!r}: use one of {', '.join(TTA_MODES)}.")
    if mode == "none":
        return [images]
    flipped = images[:, :, ::-1]
    if mode == "flip":
        return [images, flipped]
    m = max((images.shape[1] - crop) // 2, 1)  # a 48-px model still gets 1-px shifted views
    out = []
    for batch in (images, flipped):
        out.append(batch)
        padded = np.pad(batch, ((0, 0), (m, m), (m, m)), mode="edge")
        h, w = batch.shape[1:]
        for dy, dx in ((-m, -m), (-m, m), (m, -m), (m, m)):  # the four corners
            out.append(padded[:, m + dy:m + dy + h, m + dx:m + dx + w])
    return out


#: ``progress(done, total)``: called as a long forward pass goes, with how many of its inputs are done.
Progress = Callable[[int, int], None]


class Classifier:
    """What :func:`predict_proba` runs besides a Keras model: the inference engine
    (:class:`fer_core.inference.engine.Engine`), which subclasses this."""

    crop: int = 48

    def proba(self, x: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Class probabilities (N, classes) of faces (N, 48, 48, 1), 0-255."""
        raise NotImplementedError

    def features(self, faces: np.ndarray) -> np.ndarray | None:
        """What the model classifies from (N, D), or None when the Keras model must be asked."""
        raise NotImplementedError

    def proba_and_features(self, faces: np.ndarray, progress: Progress | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        """Both in one forward pass (no TTA), features None as in :meth:`features`."""
        raise NotImplementedError

    @property
    def keras(self):
        """The Keras model behind it (for gradients and layers)."""
        raise NotImplementedError


def keras_model(model):
    """The Keras model of an engine, or ``model`` itself when it is one."""
    return model.keras if isinstance(model, Classifier) else model


def model_crop(model) -> int:
    """The centre-crop size built into a model (48 when it has none; an ensemble's smallest)."""
    if isinstance(model, Classifier):
        return model.crop
    parts = ensemble_members(model)
    if parts:
        return min(model_crop(m) for m in parts)
    for layer in model.layers:
        if layer.name == "center_crop":
            return int(layer.output.shape[1])
    return 48


def predict_proba(model, images: np.ndarray, tta: str = "none", batch_size: int = 256,
                  progress: Progress | None = None) -> np.ndarray:
    """Class probabilities (N, classes) of uint8 faces (N, 48, 48), averaged over TTA views.
    ``model``: the inference engine (what the app runs) or a Keras model (training, release).
    ``progress(faces done, N)`` follows the batches (a view of a face counts as its share of it)."""
    batches = views(np.asarray(images, np.uint8), tta, model_crop(model))
    n = len(batches[0])
    x = np.concatenate(batches)[..., None]
    rows = None if progress is None else (lambda done, total: progress(done * n // max(total, 1), n))
    p = model.proba(x, rows) if isinstance(model, Classifier) else keras_proba(model, x, batch_size, rows)
    return p.reshape(len(batches), n, p.shape[-1]).mean(axis=0)


def keras_proba(model, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
    """A Keras model's probabilities of a batch (N, 48, 48, 1), safe from several threads."""
    if len(x) <= batch_size:  # one direct call: model.predict's per-call overhead dominates small inputs
        p = np.asarray(_compiled(model)(x))
    else:
        import keras

        done = keras.callbacks.LambdaCallback(on_predict_batch_end=lambda batch, logs: progress(
            min((batch + 1) * batch_size, len(x)), len(x))) if progress is not None else None
        with _lock_of(model):  # Keras' predict keeps per-call state on the model: one caller at a time
            p = model.predict(x, batch_size=batch_size, verbose=0, callbacks=[done] if done else None)
    if progress is not None and len(x) <= batch_size:
        progress(len(x), len(x))
    return p


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its forward pass as a graph
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the lock of its predict()
_GUARD = threading.Lock()  # guards both dictionaries: sessions share models (one per process)


def _lock_of(model) -> threading.Lock:
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def _compiled(model):
    """The model's forward pass compiled once per model (and input shape): one face runs 6-9x
    faster than an eager call, whose per-layer Python overhead dominates small inputs (shipped
    ensemble, 2 cores, TensorFlow: 7 ms against 65 ms). Held weakly: a model that is dropped
    takes its compiled pass with it."""
    with _GUARD:  # one compiled pass per model, whichever session asks first (it may be called concurrently)
        fn = _COMPILED.get(model)
        if fn is None:
            fn = _COMPILED[model] = _forward_pass(weakref.ref(model))  # not the model: the key must not live on
        return fn


def _forward_pass(ref):
    """``x -> probabilities`` for the Keras backend in use: a ``tf.function`` under TensorFlow, a
    ``jax.jit`` of the model's stateless call (its weights passed in) under JAX, else an eager
    call. TensorFlow is imported only when it is the backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: ref()(x, training=False), reduce_retracing=True)
    if backend == "jax":
        import jax

        @jax.jit
        def run(trainable, non_trainable, x):
            return ref().stateless_call(trainable, non_trainable, x, training=False)[0]

        def call(x):
            model = ref()
            return run([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                       np.asarray(x, np.float32))

        return call
    return lambda x: ref()(x, training=False)
