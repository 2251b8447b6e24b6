"""Finding and loading models: the shipped ones (``default``, the most accurate; ``fast``, a
small model for the views where speed matters), a run directory, or a ``.keras`` file.

Models are loaded with Keras safe mode on, so a ``.keras`` file cannot run arbitrary code
(no ``Lambda`` layers with pickled Python).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_core.config import (CLASS_NAMES, DEFAULT_MODEL, DEFAULT_MODEL_DIR, FAST_MODEL, FAST_MODEL_DIR, load_settings,
                             runs_dir)
from fer_core.data.loading import data_identity, data_name
from fer_core.device import quiet_tensorflow
from fer_core.errors import FerError, ModelError
from fer_core.runs import rundir



@dataclass(frozen=True)
class ModelRef:
    """Where a model lives and what it predicts."""

    path: Path  # the .keras file
    name: str  # what to show: "default", a run name or a file name
    classes: tuple[str, ...]
    run_dir: Path | None = None  # the run it came from, for caching evaluations
    merge: str = ""  # the class merging it was trained with

    @property
    def stamp(self) -> str:
        """Changes whenever the model file does (path, size, modification time)."""
        st = self.path.stat()
        return f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _ref(path: Path, name: str, folder: Path, run_dir: Path | None = None) -> ModelRef:
    return ModelRef(path, name, rundir.read_classes(folder) or CLASS_NAMES, run_dir, rundir.read_merge(folder))


def _from_run(run: Path) -> ModelRef:
    model = rundir.model_file(run)
    if model is None:
        raise ModelError(f"{run}: this run has no model file yet (no finished epoch). "
                         "Wait for an epoch to finish, or choose another run.")
    return _ref(model, run.name, run, run)


def shipped_folder(name: str) -> Path:
    """The package folder of a shipped model (``default`` or ``fast``)."""
    return {DEFAULT_MODEL: DEFAULT_MODEL_DIR, FAST_MODEL: FAST_MODEL_DIR}[name]


def shipped_model(name: str) -> ModelRef | None:
    """A shipped model (``default`` or ``fast``), if it is in place."""
    folder = shipped_folder(name)
    if rundir.is_model_folder(folder):
        return _ref(rundir.final_model(folder), name, folder)
    return None


def default_model() -> ModelRef | None:
    """The shipped default model, if it is in place."""
    return shipped_model(DEFAULT_MODEL)


def speed_model() -> str | None:
    """The model spec for views where speed matters (video, the live camera, Explore's maps):
    ``fast`` when it is shipped, else None (the app's model)."""
    return FAST_MODEL if shipped_model(FAST_MODEL) is not None else None


def newest_finished_run() -> ModelRef | None:
    """The most recent run that finished with a model file."""
    for run in rundir.run_dirs():
        try:
            finished = rundir.is_finished(rundir.read_info(run))
        except FerError:
            continue
        if finished and rundir.model_file(run) is not None:
            return _from_run(run)
    return None


def resolve_model(spec: str | Path | None = None) -> ModelRef:
    """Find the model that ``spec`` names.

    Args:
        spec: a ``.keras`` file, a run directory, a run name under ``data/runs``, ``"default"``, ``"fast"``,
            or None/"" for the model the app uses by default: the one chosen in the settings,
            else the shipped default, else the newest finished run.

    Raises:
        ModelError: nothing usable is found, with what to do next.
    """
    text = str(spec or "").strip()
    if not text:
        chosen = load_settings().model
        if chosen:
            try:
                return resolve_model(chosen)
            except ModelError:
                pass  # a deleted choice falls back to the default
        ref = default_model() or newest_finished_run()
        if ref is None:
            raise ModelError("No trained model is available: the shipped default model is missing and no run has "
                             "finished. Train one on the Train page or with 'python -m fer_core train'.")
        return ref
    if text == DEFAULT_MODEL:
        ref = default_model()
        if ref is None:
            raise ModelError(f"The shipped default model is missing from {DEFAULT_MODEL_DIR}; reinstall FER Studio "
                             "or choose a run.")
        return ref
    if text == FAST_MODEL:
        ref = shipped_model(FAST_MODEL)
        if ref is None:
            raise ModelError(f"This copy of FER Studio has no fast model ({FAST_MODEL_DIR} is empty): use 'default', "
                             "or ship a run with 'python -m fer_core release RUN --as fast'.")
        return ref
    path = Path(text).expanduser()
    if not path.exists() and (runs_dir() / text).is_dir():
        path = runs_dir() / text
    if path.is_dir():
        if rundir.is_run(path):
            return _from_run(path)
        if rundir.is_model_folder(path):
            return _ref(rundir.final_model(path), path.name, path)
        raise ModelError(f"{path}: neither a run directory (config.json) nor a folder with model.keras.")
    if path.is_file():
        if path.suffix != ".keras":
            raise ModelError(f"{path}: not a .keras model file.")
        return _ref(path, path.name, path.parent)
    raise ModelError(f"{text}: no such model file, run directory or run name.")


def load_model(ref: ModelRef):
    """Load a model for inference (safe mode, not compiled) and check it fits its classes.

    Raises:
        ModelError: the file is unreadable, corrupt or unsafe, does not take 48x48 grayscale faces,
            does not give one output per class, or gives scores that are not probabilities.
    """
    quiet_tensorflow()  # Keras imported under the import lock; TensorFlow fenced off under another backend
    import keras

    try:
        model = keras.saving.load_model(ref.path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file; all mean "cannot use it"
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise ModelError(f"{ref.path}: refused: the file holds Python code (e.g. a Lambda layer), which "
                             "FER Studio never runs from a model file (Keras safe mode). Use a model built from "
                             "standard layers.") from None
        raise ModelError(f"{ref.path}: cannot load this model ({type(exc).__name__}: {str(exc)[:300]}). "
                         "The file may be truncated or corrupt: choose another model or retrain.") from None
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else ()
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if shape not in ((48, 48, 1), (48, 48)):
        raise ModelError(f"{ref.path}: the model takes input of shape {shape}; FER Studio gives it 48x48 grayscale "
                         "faces, shape (48, 48, 1). Choose a model trained in FER Studio or on FER2013's faces.")
    if outputs != len(ref.classes):
        raise ModelError(f"{ref.path}: the model gives {outputs} outputs; FER Studio expects {len(ref.classes)}, one per "
                         f"class ({', '.join(ref.classes)}).")
    probe = np.asarray(model(np.stack([np.zeros((48, 48, 1)), np.full((48, 48, 1), 128.0)]), training=False))
    if not (np.all(probe >= -1e-6) and np.all(probe <= 1 + 1e-6) and np.allclose(probe.sum(axis=1), 1, atol=1e-3)):
        raise ModelError(f"{ref.path}: the model's outputs are not probabilities (they do not add up to 1: its last "
                         "layer has no softmax). Add a softmax activation to its output layer and save it again.")
    return model


def trained_on(ref: ModelRef) -> str:
    """The data source a model was trained on, as its config records it ('' when unknown)."""
    folder = ref.run_dir or ref.path.parent
    try:
        return rundir.read_config(folder).data
    except FerError:
        return ""


def data_mismatch(a: ModelRef, b: ModelRef) -> str | None:
    """A warning when two models were trained on different data sets (their numbers then measure
    different things: a model trained on the demo cartoons says nothing about FER2013), else None.
    Two copies of FER2013 (a CSV and a folder, or two paths) are the same data; the message names
    data sets, never a path on the server."""
    da, db = trained_on(a), trained_on(b)
    if not da or not db or data_identity(da) == data_identity(db):
        return None
    return (f"These models were trained on different data: {a.name} on {data_name(da)}, {b.name} on "
            f"{data_name(db)}. Their validation accuracies are not comparable; only the numbers measured here, on "
            "the same faces, are.")


def top_k(proba: np.ndarray, classes: tuple[str, ...], k: int = 3) -> list[list[tuple[str, float]]]:
    """The k most likely classes of each row, with their probabilities."""
    order = np.argsort(-proba, axis=1)[:, :k]
    return [[(classes[j], float(row[j])) for j in idx] for row, idx in zip(proba, order)]
