"""Inside the network: the features it classifies from (an embedding map), what each layer
responds to for one face, what a change to the face does to it ("what if"), and all the Explore
page shows of one face (:class:`FaceViews`, with the explanations of :mod:`fer_core.inference.explain`).

Any model works: the shipped one, a run, an ensemble. Its **features** are the input of its
classifier (the last ``Dense`` layer, ``probabilities``); an ensemble's are its members' features
side by side, each scaled to unit length so that no member outweighs the others.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fer_core import files
from fer_core.config import cache_dir, read_only
from fer_core.data.dataset import Dataset
from fer_core.errors import ConfigError, FerError, ModelError
from fer_core.inference.engine import load_engine
from fer_core.inference.explain import GREY, Explanation, gradcam, occlusion
from fer_core.inference.loader import ModelRef
from fer_core.inference.forward import Classifier, Progress, keras_model, predict_proba
from fer_core.models.ensemble import members as ensemble_members

METHODS = ("pca", "tsne")
#: Neighbours that vote in the k-NN accuracy (leave-one-out) and that a face's neighbour list shows.
KNN = 10

_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (feature models, lock)
_EXTRACTORS_LOCK = threading.Lock()
_LAYERS_LOCK = threading.Lock()  # one face through a probe at a time (Keras calls share per-model state)


def _classifier_inputs(model) -> list:
    """Feature models of ``model``: one per member (one for a single network)."""
    import keras

    out = []
    for net in ensemble_members(model) or [model]:
        dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
        if not dense:
            raise ModelError(f"{net.name}: no Dense classifier layer, so there are no features to map.")
        out.append(keras.Model(net.inputs[0], dense[-1].input))
    return out


def _extractor(model):
    with _EXTRACTORS_LOCK:
        found = _EXTRACTORS.get(model)
        if found is None:
            found = _EXTRACTORS[model] = (_classifier_inputs(model), threading.Lock())
        return found


def features(model, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The features ``model`` classifies ``faces`` (N, 48, 48[, 1] uint8) from: (N, D) float32.
    The engine gives them from its artifact; a Keras model (or the engine's when Keras runs it)
    one forward pass per model at a time. Safe from several threads."""
    if isinstance(model, Classifier):
        found = model.features(faces)
        if found is not None:
            return found
        model = model.keras
    nets, lock = _extractor(model)
    x = np.asarray(faces, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    parts = []
    with lock:
        for net in nets:
            f = np.concatenate([np.asarray(net(x[i:i + batch_size], training=False)).reshape(len(x[i:i + batch_size]), -1)
                                for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, 1), np.float32)
            if len(nets) > 1:
                f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-6)
            parts.append(f.astype(np.float32))
    return np.concatenate(parts, axis=1)


def layout(feats: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The features laid out in 2-D: ``pca`` (at once) or ``tsne`` (scikit-learn; seconds per
    thousand faces). (N, 2) float32, each axis scaled to [0, 1]."""
    if method not in METHODS:
        raise ConfigError(f"Layout {method!r}: use one of {', '.join(METHODS)}.", field="method")
    if len(feats) < 3:
        raise ConfigError(f"{len(feats)} face(s): a map needs at least 3.", field="split")
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(feats)
    else:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, feats.shape[1], len(feats)), random_state=seed).fit_transform(feats)
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(feats) - 1) / 3), init="pca", random_state=seed,
                  max_iter=500).fit_transform(reduced)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return ((xy - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


def neighbours(x: np.ndarray, k: int = KNN) -> np.ndarray:
    """Each point's ``k`` nearest other points (Euclidean), nearest first: (N, k) indices."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    _, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()  # no X: each point's others, never itself
    return idx


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = KNN) -> float:
    """How often a face's class is the majority class of its ``k`` nearest other faces (leave
    one out): how well the space keeps the classes apart, in the full features or on the map."""
    idx = neighbours(x, k)
    votes = labels[idx]
    counts = np.stack([(votes == c).sum(axis=1) for c in range(int(labels.max()) + 1)], axis=1)
    # a tie goes to the tied class of the nearest neighbour among them
    tied = counts == counts.max(axis=1, keepdims=True)
    rank = np.full(counts.shape, k + 1)
    for j in range(idx.shape[1] - 1, -1, -1):
        rank[np.arange(len(x)), votes[:, j]] = j
    winner = np.where(tied, rank, k + 2).argmin(axis=1)
    return float((winner == labels).mean())


@dataclass
class Embedding:
    """A split's faces on a 2-D map, with their classes and the k-NN accuracies."""

    method: str
    split: str
    index: np.ndarray  # the faces' positions in the split
    xy: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    knn_full: float
    knn_2d: float
    near: np.ndarray  # each face's nearest faces in the full feature space (indices into ``index``)

    def to_json(self, classes: tuple[str, ...]) -> dict:
        return {"method": self.method, "split": self.split, "knn_accuracy_full": round(self.knn_full, 4),
                "knn_accuracy_2d": round(self.knn_2d, 4), "k": KNN,
                "points": [{"index": int(i), "x": round(float(x), 5), "y": round(float(y), 5),
                            "true": classes[t], "pred": classes[p], "confidence": round(float(c), 4)}
                           for i, (x, y), t, p, c in zip(self.index, self.xy, self.true, self.pred, self.confidence)]}


def embed(model, images: np.ndarray, labels: np.ndarray, split: str, method: str = "pca",
          sample: int | None = None, seed: int = 0, progress: Progress | None = None) -> Embedding:
    """The map of one split's faces (all of them, or a fixed ``sample``), its k-NN accuracies and
    each face's neighbours. ``progress(faces done, faces)`` follows the forward pass; the layout
    comes after its last call."""
    if sample is not None and sample < 3:
        raise ConfigError(f"--sample {sample}: a map needs at least 3 faces.", field="sample")
    index = np.arange(len(labels))
    if sample is not None and sample < len(labels):
        index = np.sort(np.random.default_rng(seed).choice(len(labels), sample, replace=False))
    faces, true = images[index], labels[index].astype(int)
    proba, feats = model.proba_and_features(faces, progress) if isinstance(model, Classifier) else (None, None)
    if feats is None:  # a Keras model, or an engine that runs Keras
        feats, proba = features(model, faces), predict_proba(model, faces, progress=progress)
    xy = layout(feats, method, seed)
    return Embedding(method, split, index, xy, true, proba.argmax(axis=1), proba.max(axis=1),
                     knn_accuracy(feats, true), knn_accuracy(xy, true), neighbours(feats))


MAP_CACHE_VERSION = 1
MAP_ARRAYS = ("index", "xy", "true", "pred", "confidence", "near")


def _map_file(ref: ModelRef, dataset: Dataset, split: str, method: str, sample: int | None) -> Path:
    part = dataset.subset(split)
    h = hashlib.sha1(f"{MAP_CACHE_VERSION}|{ref.stamp}|{split}|{method}|{sample}|{dataset.class_names}".encode())
    h.update(np.ascontiguousarray(part.images).tobytes())
    h.update(np.ascontiguousarray(part.labels).tobytes())
    return cache_dir() / "embed" / f"{h.hexdigest()}.npz"


def embed_cached(ref: ModelRef, dataset: Dataset, split: str, method: str = "pca", sample: int | None = None,
                 load: Callable = load_engine, progress: Progress | None = None) -> tuple[Embedding, bool]:
    """:func:`embed` of a model's split with an on-disk cache (``data/cache/embed``, keyed by the
    model file, the split's pixels and labels, the layout and the sample); returns ``(map,
    came_from_cache)``. ``load(ref)`` loads the model, only on a miss. A read-only server reads the
    cache and writes nothing."""
    file = _map_file(ref, dataset, split, method, sample)
    loaded = files.load_npz(file, MAP_ARRAYS) if file.exists() else None
    if loaded is not None:
        arrays, meta = loaded
        try:
            return Embedding(meta["method"], meta["split"], *(arrays[k] for k in MAP_ARRAYS[:5]),
                             meta["knn_full"], meta["knn_2d"], arrays["near"]), True
        except (KeyError, TypeError):
            pass  # a damaged entry is computed again
    part = dataset.subset(split)
    emb = embed(load(ref), part.images, part.labels, split, method, sample, progress=progress)
    if not read_only():
        try:
            files.save_npz(file, {k: getattr(emb, k) for k in MAP_ARRAYS},
                           {"method": emb.method, "split": emb.split, "knn_full": emb.knn_full, "knn_2d": emb.knn_2d})
        except OSError:
            pass  # an unwritable cache only costs the cache
    return emb, False


# ---------------------------------------------------------------------- one face, layer by layer
def _block_outputs(net) -> list:
    """The layers that end a convolutional block (its activation, or its pooling): what a block sees."""
    import keras

    out = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)) or (
                isinstance(layer, keras.layers.Activation) and len(getattr(layer, "output").shape) == 4):
            out.append(layer)
    return out


def layers(model, face: np.ndarray, top: int = 6) -> dict:
    """One face through the network (the first member of an ensemble): for every block, its
    output's shape and its ``top`` most active channels (each a map scaled to [0, 1]); the first
    convolution's filters; the class scores before the softmax and the probabilities after it
    (``note`` says what a network without convolution blocks cannot show)."""
    import keras

    model = keras_model(model)  # the layers of the engine's Keras model
    net = (ensemble_members(model) or [model])[0]
    blocks = _block_outputs(net)
    last = net.layers[-1]
    # the scores: what the final softmax takes (a softmax layer's input; for a softmax Dense, its own sum)
    probe = keras.Model(net.inputs[0], [b.output for b in blocks] + [last.input])
    x = np.asarray(face, np.float32).reshape(1, 48, 48, 1)
    with _LAYERS_LOCK:
        outs = probe(x, training=False)
        outs = [np.asarray(m)[0] for m in (outs if isinstance(outs, (list, tuple)) else [outs])]
    maps, scores = outs[:-1], outs[-1].reshape(-1)
    if isinstance(last, keras.layers.Dense):  # the Dense layer's input: its sum is the scores
        scores = scores @ np.asarray(last.kernel) + (np.asarray(last.bias) if last.use_bias else 0)
    out = []
    for layer, m in zip(blocks, maps):
        strength = m.reshape(-1, m.shape[-1]).mean(axis=0)
        chans = []
        for c in np.argsort(-strength)[:top]:
            a = m[..., c]
            span = float(a.max() - a.min())
            chans.append({"channel": int(c), "mean": round(float(strength[c]), 4),
                          "map": np.round((a - a.min()) / span if span > 0 else np.zeros_like(a), 3).tolist()})
        out.append({"name": layer.name, "shape": list(m.shape), "top_channels": chans})
    conv = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    filters = []
    if conv:
        w = np.asarray(conv[0].kernel)  # (h, w, in, out)
        w = w.mean(axis=2)
        for c in range(w.shape[-1]):
            k = w[..., c]
            span = float(k.max() - k.min())
            filters.append(np.round((k - k.min()) / span if span > 0 else np.zeros_like(k), 3).tolist())
    proba = np.exp(scores - scores.max())
    return {"model": net.name, "layers": out, "first_filters": filters,
            "note": None if out else "This network has no convolution blocks: nothing spatial to show.",
            "logits": np.round(scores, 4).tolist(), "probabilities": np.round(proba / proba.sum(), 4).tolist()}


# ---------------------------------------------------------------------- "what if"
#: The what-if edits of a 48x48 face (FER2013 framing: eyes about rows 14-24, mouth rows 30-42).
EDITS = ("cover the eyes", "cover the mouth", "cover the upper half", "cover the lower half", "mirror",
         "rotate 15° left", "rotate 15° right", "brighten", "darken")


def edit(face: np.ndarray, name: str) -> np.ndarray:
    """The face with one what-if edit applied (see EDITS)."""
    import cv2

    f = np.asarray(face, np.uint8).reshape(48, 48).copy()
    if name == "cover the eyes":
        f[13:25, 4:44] = GREY
    elif name == "cover the mouth":
        f[30:43, 10:38] = GREY
    elif name == "cover the upper half":
        f[:24] = GREY
    elif name == "cover the lower half":
        f[24:] = GREY
    elif name == "mirror":
        f = f[:, ::-1].copy()
    elif name.startswith("rotate"):
        angle = 15 if "left" in name else -15
        m = cv2.getRotationMatrix2D((23.5, 23.5), angle, 1.0)
        f = cv2.warpAffine(f, m, (48, 48), borderMode=cv2.BORDER_REPLICATE)
    elif name == "brighten":
        f = np.clip(f.astype(int) + 50, 0, 255).astype(np.uint8)
    elif name == "darken":
        f = np.clip(f.astype(int) - 50, 0, 255).astype(np.uint8)
    else:
        raise ConfigError(f"Unknown edit {name!r}: use one of {', '.join(EDITS)}.", field="edit")
    return f


def what_if(model, face: np.ndarray, names: tuple[str, ...] = EDITS) -> dict[str, np.ndarray]:
    """The class probabilities of the face as it is (``"as it is"``) and after each edit, in one batch."""
    faces = [np.asarray(face, np.uint8).reshape(48, 48)] + [edit(face, n) for n in names]
    proba = predict_proba(model, np.stack(faces))
    return dict(zip(("as it is", *names), proba))


# ---------------------------------------------------------------------- all of one face
@dataclass
class FaceViews:
    """Everything the Explore page shows of one 48x48 face."""

    proba: np.ndarray  # the class probabilities of the face as it is
    layers: dict  # the face layer by layer (:func:`layers`), or its ``note`` when the probe cannot read the network
    gradcam: Explanation
    occlusion: Explanation
    what_if: dict[str, np.ndarray]  # :func:`what_if`


def face_views(model, face: np.ndarray) -> FaceViews:
    """:class:`FaceViews` of one face; its explanations are of the predicted class."""
    face = np.asarray(face, np.uint8).reshape(48, 48)
    what = what_if(model, face)
    target = int(what["as it is"].argmax())
    try:
        inside = layers(model, face)
    except (FerError, ValueError) as exc:  # a network the probe cannot read: the rest still shows
        inside = {"model": "", "layers": [], "first_filters": [], "logits": [], "probabilities": [],
                  "note": f"Layer by layer is not available for this model ({exc})."}
    return FaceViews(what["as it is"], inside, gradcam(model, face[None], np.array([target]))[0],
                     occlusion(model, face, target), what)
