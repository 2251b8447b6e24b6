"""Why a model gave its answer for one 48x48 face: Grad-CAM (where the gradient of the class's
score points, in the last convolutions), occlusion sensitivity (what covering each part costs)
and the heat-map overlay both are shown with.

Each explanation is a pair ``(map, note)``: a 48x48 map in [0, 1] and None, or None and a
sentence saying why there is no map.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from fer_core.device import TENSORFLOW_ONLY, configured_backend
from fer_core.inference.forward import keras_model, model_crop, predict_proba
from fer_core.models.ensemble import members as ensemble_members

Explanation = tuple[np.ndarray | None, str | None]  # (map, None) or (None, why there is none)
#: Occlusion: a grey square this many pixels wide slides over the 48x48 face in steps of STRIDE.
PATCH, STRIDE, GREY = 8, 4, 128
CONV_LAYERS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
MIN_CAM_SIDE = 5  # a coarser map (2x2 after the last pooling) says little about where the model looked
NO_CONV = "This model has no convolution layer, so Grad-CAM has no spatial map to explain."
EMPTY_CAM = "Nothing to show: no region of this face raised the predicted class's score (the map is empty)."


def explanation_layer(model):
    """The layer Grad-CAM explains: the last convolution whose map is at least 5x5 (Selvaraju et
    al. use the last convolutional layer; after the last pooling the map is too coarse to show
    anything), else the last convolution or nested network; None for a model without one.

    On the shipped model and 200 PrivateTest faces, the last 5x5 convolution gave a non-empty map
    for all 200 and put 73% of its mass on the inner two thirds of the face; the ReLU after it
    gave 188 maps (12 empty) and 83%.
    """
    best, last = None, None
    for layer in model.layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is None or len(shape) != 4 or not (type(layer).__name__ in CONV_LAYERS or hasattr(layer, "layers")):
            continue
        last = layer
        if min(shape[1], shape[2]) >= MIN_CAM_SIDE:
            best = layer
    return best or last


def gradcam(model, faces: np.ndarray, targets: np.ndarray) -> list[Explanation]:
    """Grad-CAM (Selvaraju et al. 2017), one ``(map, note)`` per face: a smooth 48x48 map in [0, 1],
    or None with a sentence saying why there is none (no convolution, or an empty map).

    The map covers the centre crop the model sees (the rest of the 48x48 face stays 0). For an
    ensemble (see :mod:`fer_core.models.ensemble`), each member explains the ensemble's class and the
    members' maps are averaged. It runs on TensorFlow only: under another Keras backend every face
    gets no map and a note that says so.
    """
    backend = configured_backend()
    if backend != "tensorflow":
        return [(None, TENSORFLOW_ONLY.format(what="Grad-CAM", backend=backend))] * len(faces)
    import tensorflow as tf

    model = keras_model(model)  # the engine's Keras model: Grad-CAM needs gradients
    parts = ensemble_members(model)
    if parts:
        return _mean_maps([gradcam(m, faces, targets) for m in parts])
    layer = explanation_layer(model)
    if layer is None:
        return [(None, NO_CONV)] * len(faces)
    x = tf.convert_to_tensor(faces[..., None].astype("float32"))
    cams = _cam_graph(model, layer)(x, tf.convert_to_tensor(np.asarray(targets, np.int32))).numpy()
    crop = model_crop(model)
    off = (faces.shape[1] - crop) // 2
    out_maps = []
    for cam in cams:
        top = float(cam.max())
        if not top > 0:
            out_maps.append((None, EMPTY_CAM))
            continue
        full = np.zeros(faces.shape[1:3], np.float32)
        resized = np.clip(tf.image.resize(cam[..., None] / top, (crop, crop), method="bicubic").numpy()[..., 0], 0, None)
        full[off:off + crop, off:off + crop] = resized / resized.max()  # smooth, and its peak is 1
        out_maps.append((full, None))
    return out_maps


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its Grad-CAM graph
_PROBES_LOCK = threading.Lock()


def _cam_graph(model, layer):
    """Grad-CAM's raw maps (N, h, w) for faces and target classes, as a TensorFlow graph built and
    traced once per model: an eager GradientTape through a member costs several times more for a
    few faces (sessions share models, so it is built under a lock)."""
    import keras
    import tensorflow as tf

    with _PROBES_LOCK:
        fn = _PROBES.get(model)
        if fn is None:
            probe = keras.Model(model.inputs, [layer.output, model.output])

            @tf.function(reduce_retracing=True)
            def fn(x, targets):
                with tf.GradientTape() as tape:
                    fmap, out = probe(x, training=False)
                    score = tf.reduce_sum(out * tf.one_hot(targets, tf.shape(out)[-1]), axis=1)
                grads = tape.gradient(score, fmap)
                weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                return tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))

            _PROBES[model] = fn
        return fn


def _mean_maps(per_member: list[list[tuple]]) -> list[Explanation]:
    """Average the members' maps face by face (members with no map for a face are left out)."""
    out = []
    for maps in zip(*per_member):
        valid = [m for m, _ in maps if m is not None]
        if not valid:
            out.append((None, maps[0][1]))
            continue
        mean = np.mean(valid, axis=0)
        out.append((mean / mean.max(), None))
    return out


def occlusion(model, face: np.ndarray, target: int | None = None) -> Explanation:
    """Occlusion sensitivity: a grey PATCH x PATCH square slides over the face (STRIDE apart) and
    each pixel gets the mean drop of the ``target`` class's probability (default: the predicted
    one) while it was covered, scaled to [0, 1]. Returns ``(map, None)`` or ``(None, why)``."""
    face = np.asarray(face, np.uint8).reshape(48, 48)
    base = predict_proba(model, face[None])[0]
    target = int(base.argmax()) if target is None else target
    spots = [(y, x) for y in range(0, 48 - PATCH + 1, STRIDE) for x in range(0, 48 - PATCH + 1, STRIDE)]
    batch = np.repeat(face[None], len(spots), axis=0)
    for k, (y, x) in enumerate(spots):
        batch[k, y:y + PATCH, x:x + PATCH] = GREY
    drop = base[target] - predict_proba(model, batch)[:, target]
    total, count = np.zeros((48, 48), np.float32), np.zeros((48, 48), np.float32)
    for (y, x), d in zip(spots, drop):
        total[y:y + PATCH, x:x + PATCH] += d
        count[y:y + PATCH, x:x + PATCH] += 1
    heat = np.clip(total / np.maximum(count, 1), 0, None)
    if heat.max() <= 1e-6:
        return None, "Covering any part of this face never lowered the predicted class's probability."
    return heat / heat.max(), None


def overlay(face: np.ndarray, cam: np.ndarray, size: int = 192, alpha: float = 0.45) -> np.ndarray:
    """An RGB picture of a face with its heat map blended over it (JET colours)."""
    import cv2

    gray = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize((cam * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return (base * (1 - alpha) + colour * alpha).astype(np.uint8)
