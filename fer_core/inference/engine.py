"""The inference engine: every forward pass the app makes (photos, video, the live camera,
evaluation, Explore's features and maps, occlusion, what-if) runs a model compiled for LiteRT.
Keras stays for training and for what needs gradients (Grad-CAM, the layer probes).

Artifact protocol (this module is its one owner)::

    engine.tflite   the model for LiteRT: uint8 faces (N, 48, 48, 1) in, ``probabilities``
                    (N, classes) and ``features`` (N, D: the classifier's input, what Explore maps) out
    engine.json     {"format", "runtime", "quantize", "source": the model file's SHA-256,
                     "artifact": engine.tflite's SHA-256, "crop", "parity": how it was checked}

- A shipped model's artifact lies beside its ``model.keras``: ``release`` compiles every candidate
  (:data:`QUANTIZE`), keeps the fastest whose PublicTest accuracy is at most :data:`MAX_DROP`
  below Keras', and writes its parity figures on the card.
- Any other model (a run, a ``.keras`` file) is compiled on first use and checked against Keras on
  probe faces (:func:`probe_parity`); the artifact is cached under ``data/cache/engine/<source>/``,
  never inside the run (only its worker writes a run), and not at all on a read-only server.
- The artifact is used only while both hashes match: a retrained model, a half-written file or a
  copy from another model is never run. ``engine.tflite`` is written before ``engine.json``
  (each atomically), so a crash leaves no JSON that names a missing artifact.
- Fallback: when LiteRT is missing, Keras runs on another backend than TensorFlow (the converter
  needs it), compiling fails or no artifact passes its parity check, the engine runs the Keras
  model and :attr:`Engine.note` says why.

A LiteRT interpreter is not thread-safe: each call borrows one from a bounded pool per engine
(:data:`POOL_SIZE`), batches go through in chunks of :data:`CHUNK` faces (bounding the
interpreter's memory), and the Keras model is loaded once, only when a gradient is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from fer_core import files
from fer_core.config import cache_dir, env_number, read_only
from fer_core.data.demo import make_demo_dataset
from fer_core.device import configured_backend, quiet_stderr
from fer_core.errors import ModelError
from fer_core.inference.forward import Classifier, Progress, keras_proba, model_crop
from fer_core.inference.loader import ModelRef, load_model, resolve_model
from fer_core.models.ensemble import members as ensemble_members
from fer_core.shared import Pool

ARTIFACT, META = "engine.tflite", "engine.json"
FORMAT = 1
RUNTIME = "litert"
#: Candidate artifacts, fastest first: int8 weights with activations quantized at run time
#: (XNNPACK), then float32.
QUANTIZE = ("dynamic", "none")
LABELS = {"dynamic": "LiteRT 8-bit (dynamic range)", "none": "LiteRT float32"}
#: A release keeps the fastest artifact whose PublicTest accuracy (default TTA) is at most this far below Keras'.
MAX_DROP = 0.002
#: A model compiled on first use is kept when its top answer agrees with Keras' on this share of the probe faces.
MIN_AGREEMENT = 0.98
#: Faces per interpreter call: bounds an interpreter's activations (about 40 MB for the ensemble).
CHUNK = 128
#: Interpreters per engine, each used by one thread at a time (``FER_ENGINE_POOL``, default: the cores).
POOL_SIZE_VAR = "FER_ENGINE_POOL"
#: Threads inside one interpreter call.
THREADS = max(1, min(2, os.cpu_count() or 1))


def pool_size() -> int:
    """How many interpreters one engine may hold at once (``FER_ENGINE_POOL``, else the cores)."""
    return env_number(POOL_SIZE_VAR, os.cpu_count() or 1)


def runtime_missing() -> str | None:
    """Why the engine cannot compile or run an artifact here, or None when it can."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "LiteRT (ai-edge-litert) is not installed: pip install -r requirements.txt"
    return None


def compile_missing() -> str | None:
    """Why a model cannot be compiled here (no runtime, or Keras runs without TensorFlow)."""
    backend = configured_backend()
    if backend != "tensorflow":
        return f"compiling for LiteRT needs TensorFlow as Keras' backend, and this process runs {backend}"
    return runtime_missing()


# ------------------------------------------------------------------ the artifact
_HASHES: dict[tuple, str] = {}
_HASHES_LOCK = threading.Lock()


def file_id(path: Path) -> str:
    """The SHA-256 of a file (remembered per path, size and modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASHES_LOCK:
        found = _HASHES.get(key)
    if found is None:
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        with _HASHES_LOCK:
            _HASHES[key] = found
    return found


def serving_graph(model):
    """A functional model: uint8 faces named ``faces`` in, ``{"probabilities", "features"}`` out.
    The features are the input of each member's last Dense layer; an ensemble's are its members'
    side by side, each scaled to unit length (as :func:`fer_core.inference.explore.features`)."""
    import keras

    faces = keras.Input((48, 48, 1), dtype="uint8", name="faces")
    x = keras.ops.cast(faces, "float32")
    nets = ensemble_members(model) or [model]
    parts = []
    for net in nets:
        dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
        if not dense:
            raise ModelError(f"{net.name}: no Dense classifier layer; the engine needs one to give features.")
        f = keras.ops.reshape(keras.Model(net.inputs[0], dense[-1].input)(x, training=False), (-1, dense[-1].input.shape[-1]))
        if len(nets) > 1:
            f = f / (keras.ops.sqrt(keras.ops.sum(f * f, axis=1, keepdims=True)) + 1e-6)
        parts.append(f)
    feats = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=1)
    graph = keras.Model(faces, {"probabilities": model(x, training=False), "features": feats}, name="fer_engine")
    graph(np.zeros((1, 48, 48, 1), np.uint8))  # Keras exports only a model that has been called
    return graph


def convert(model, quantize: str = "dynamic", graph=None) -> bytes:
    """``model`` (or a ready ``graph``, e.g. an export's serving model) as a LiteRT flatbuffer.

    Raises:
        ModelError: an unknown quantization, or no TensorFlow to convert with.
    """
    if quantize not in ("none", "dynamic", "float16"):
        raise ModelError(f"{quantize!r} is not a LiteRT quantization; use one of none, dynamic, float16.")
    backend = configured_backend()
    if backend != "tensorflow":
        raise ModelError(f"Cannot compile the model: the converter needs TensorFlow as Keras' backend, and this "
                         f"process runs {backend}.")
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="fer-engine-") as tmp:
        with quiet_stderr():
            (graph or serving_graph(model)).export(str(Path(tmp) / "saved_model"), format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model"))
            if quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, activations at run time
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
            return converter.convert()


def write_artifact(folder: Path, data: bytes, meta: dict) -> None:
    """Write ``engine.tflite`` then ``engine.json`` into ``folder`` (see the module's protocol)."""
    folder.mkdir(parents=True, exist_ok=True)
    files.atomic_write(folder / ARTIFACT, lambda tmp: tmp.write_bytes(data))
    files.write_json(folder / META, {**meta, "format": FORMAT, "runtime": RUNTIME,
                                     "artifact": hashlib.sha256(data).hexdigest()})


def write_keras_choice(folder: Path, source: str, why: str) -> None:
    """Record beside a shipped model that Keras runs it (no artifact kept its accuracy): any earlier
    artifact is removed, and the engine never compiles one on first use for this file."""
    (folder / ARTIFACT).unlink(missing_ok=True)
    files.write_json(folder / META, {"format": FORMAT, "runtime": "keras", "source": source, "why": why})


def keras_choice(folder: Path, source: str) -> str | None:
    """Why Keras runs the model whose SHA-256 is ``source`` (recorded at release), or None."""
    meta = files.read_json(folder / META, None)
    if isinstance(meta, dict) and meta.get("runtime") == "keras" and meta.get("source") == source:
        return str(meta.get("why") or "recorded at release")
    return None


def read_artifact(folder: Path, source: str) -> tuple[bytes, dict] | None:
    """``(flatbuffer, meta)`` of the artifact in ``folder`` compiled from the model whose SHA-256
    is ``source``; None when there is none, or it is for another model, or it is damaged."""
    meta = files.read_json(folder / META, None)
    if (not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("source") != source
            or meta.get("runtime") != RUNTIME):
        return None
    try:
        data = (folder / ARTIFACT).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != meta.get("artifact"):
        return None
    return data, meta


def cache_folder(source: str) -> Path:
    """Where the artifact of a model that is not shipped is cached (by the model file's hash)."""
    return cache_dir() / "engine" / source[:32]


def meta_for(ref: ModelRef, model, quantize: str) -> dict:
    """The ``engine.json`` fields of an artifact compiled from ``ref``'s file (Keras ``model``);
    its parity is added once measured."""
    return {"source": file_id(ref.path), "quantize": quantize, "crop": model_crop(model),
            "params": int(model.count_params()), "parity": {}}


# ------------------------------------------------------------------ the engine
class Engine(Classifier):
    """A model ready for inference: its LiteRT artifact (or Keras, with :attr:`note` saying why).

    Safe to call from many threads at once. :attr:`keras` loads the Keras model on first use
    (Grad-CAM and the layer probes need its gradients and layers).
    """

    def __init__(self, ref: ModelRef, artifact: bytes | None = None, meta: dict | None = None, keras_model=None,
                 note: str = ""):
        self.ref, self.meta, self.note = ref, meta or {}, note
        self.artifact = artifact
        self._keras = keras_model
        self._keras_lock = threading.Lock()
        if artifact is None:
            if keras_model is None:
                raise ValueError("an engine needs an artifact or a Keras model")
            self.crop = model_crop(keras_model)
        else:
            self.crop = int(self.meta.get("crop", 48))
            self._pool = Pool(self._interpreter, pool_size())

    @property
    def runtime(self) -> str:
        """What runs the forward pass, for people: "LiteRT 8-bit (dynamic range)" or "Keras"."""
        return LABELS.get(self.meta.get("quantize"), "LiteRT") if self.artifact is not None else "Keras"

    @property
    def keras(self):
        """The Keras model (loaded once, on first use)."""
        with self._keras_lock:
            if self._keras is None:
                self._keras = load_model(self.ref)
            return self._keras

    def _interpreter(self):
        from ai_edge_litert.interpreter import Interpreter

        with quiet_stderr():
            it = Interpreter(model_content=self.artifact, num_threads=THREADS)
        return it.get_signature_runner("serving_default")

    def _run(self, x: np.ndarray, progress: Progress | None = None) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(np.asarray(x).reshape(-1, 48, 48, 1).astype(np.uint8, copy=False))
        out: dict[str, list] = {}
        with self._pool.borrow() as run:
            for i in range(0, len(x), CHUNK):
                for key, value in run(faces=x[i:i + CHUNK]).items():
                    out.setdefault(key, []).append(np.array(value, np.float32))  # a copy: buffers are reused
                if progress is not None:
                    progress(min(i + CHUNK, len(x)), len(x))
        return {k: np.concatenate(v) for k, v in out.items()}

    def proba(self, x: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Class probabilities (N, classes) of faces (N, 48, 48[, 1]), 0-255."""
        if len(x) == 0:
            return np.zeros((0, len(self.ref.classes)), np.float32)
        if self.artifact is None:
            return keras_proba(self._keras, np.asarray(x, np.float32).reshape(-1, 48, 48, 1), progress=progress)
        return self._run(x, progress)["probabilities"]

    def features(self, faces: np.ndarray) -> np.ndarray | None:
        """What the model classifies from (N, D), or None when Keras runs (the caller asks Keras)."""
        if self.artifact is None:
            return None
        if len(faces) == 0:
            return np.zeros((0, 1), np.float32)
        return self._run(faces).get("features")


    def proba_and_features(self, faces: np.ndarray, progress: Progress | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and features of faces in one pass (what Explore's map needs)."""
        if self.artifact is None or len(faces) == 0:
            return self.proba(np.asarray(faces), progress), self.features(faces)
        out = self._run(faces, progress)
        return out["probabilities"], out.get("features")


def probe_faces() -> np.ndarray:
    """The faces a model compiled on first use is checked on: demo faces and their mirror images
    (drawn by our code; no data set needed)."""
    faces = make_demo_dataset(per_class=16, seed=11).images
    return np.concatenate([faces, faces[:, :, ::-1]])


def probe_parity(engine: Engine, model, faces: np.ndarray) -> dict:
    """How the artifact agrees with Keras on ``faces``: top-1 agreement and the largest difference
    of a probability."""
    a = engine.proba(faces)
    b = keras_proba(model, np.asarray(faces, np.float32)[..., None])
    return {"faces": int(len(faces)), "agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 4),
            "max_abs_diff": round(float(np.abs(a - b).max()), 4)}


_ENGINES_LOCK = threading.Lock()
#: Artifacts compiled by this process, by source (the newest few): a model compiled once is not
#: compiled again while the process lives, even where no cache file can be written (read-only).
_COMPILED: OrderedDict[str, tuple[bytes, dict]] = OrderedDict()
COMPILED_KEEP = 8


def _remember(source: str, data: bytes, meta: dict) -> None:
    _COMPILED[source] = (data, meta)
    _COMPILED.move_to_end(source)
    while len(_COMPILED) > COMPILED_KEEP:
        _COMPILED.popitem(last=False)


def load_engine(ref: ModelRef, log=lambda line: None) -> Engine:
    """The engine of a model: its artifact when one is in place for this very file, else one
    compiled now (kept when it passes :func:`probe_parity`), else Keras with the reason.

    Raises:
        ModelError: the model file cannot be used at all (see :func:`load_model`).
    """
    source = file_id(ref.path)
    problem = runtime_missing()
    if problem is None:
        found = (_COMPILED.get(source) or read_artifact(ref.path.parent, source)
                 or read_artifact(cache_folder(source), source))
        if found is not None:
            return Engine(ref, found[0], dict(found[1]))
    model = load_model(ref)
    chosen = keras_choice(ref.path.parent, source)
    if chosen is not None:
        return Engine(ref, keras_model=model, note=f"Keras runs this model: {chosen}.")
    problem = problem or compile_missing()
    if problem is not None:
        return Engine(ref, keras_model=model, note=f"Keras runs this model: {problem}.")
    with _ENGINES_LOCK:  # one compilation at a time per process: it takes seconds and a lot of memory
        found = _COMPILED.get(source) or read_artifact(cache_folder(source), source)
        if found is not None:
            return Engine(ref, found[0], dict(found[1]), keras_model=model)
        faces, reasons = probe_faces(), []
        for quantize in QUANTIZE:
            log(f"compiling {ref.name} for LiteRT ({LABELS[quantize]})")
            try:
                data = convert(model, quantize)
            except Exception as exc:  # the converter raises many types; all mean "no artifact"
                reasons.append(f"{quantize}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            meta = meta_for(ref, model, quantize)
            engine = Engine(ref, data, meta, keras_model=model)
            parity = probe_parity(engine, model, faces)
            if parity["agreement"] < MIN_AGREEMENT:
                reasons.append(f"{quantize}: agrees with Keras on {parity['agreement']:.1%} of probe faces")
                continue
            engine.meta["parity"] = parity
            _remember(source, data, dict(engine.meta))
            if not read_only():
                try:
                    write_artifact(cache_folder(source), data, engine.meta)
                except OSError:
                    pass  # a full or read-only disk costs only the cache
            return engine
    return Engine(ref, keras_model=model,
                  note="Keras runs this model: no LiteRT artifact passed its check (" + "; ".join(reasons) + ").")


def engine_for(spec) -> Engine:
    """:func:`load_engine` of what ``spec`` names (see :func:`fer_core.inference.loader.resolve_model`)."""
    return load_engine(resolve_model(spec))
