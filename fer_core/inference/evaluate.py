"""Evaluation: accuracy, per-class precision/recall/F1, the confusion matrix, per-image predictions.

Every metric comes from scikit-learn. Results are cached per (model file, images, split, TTA):
in the run directory for a run's model, under ``data/cache/eval`` otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fer_core import files
from fer_core.config import cache_dir, read_only
from fer_core.data.dataset import Dataset
from fer_core.errors import DataError
from fer_core.inference.forward import Progress, predict_proba
from fer_core.inference.engine import load_engine
from fer_core.inference.loader import ModelRef
from fer_core.runs import rundir

CACHE_VERSION = 2  # 2: answers of the inference engine (LiteRT), no longer of Keras


@dataclass
class EvalResult:
    """Metrics and per-image predictions of one model on one split."""

    classes: tuple[str, ...]
    split: str
    tta: str
    model: str
    y_true: np.ndarray  # (N,) class indices
    proba: np.ndarray  # (N, classes)
    index: np.ndarray  # (N,) positions of the images in the data set given to evaluate()
    metrics: dict

    @property
    def y_pred(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.proba.max(axis=1)

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(self.metrics["confusion_matrix"])

    def to_json(self) -> dict:
        """The CLI's JSON: accuracy, macro/weighted F1, per-class report, confusion matrix."""
        return {**self.metrics, "split": self.split, "model": self.model, "tta": self.tta,
                "classes": list(self.classes)}

    def predictions_table(self, origins: np.ndarray | None = None) -> list[dict]:
        """One row per image: true and predicted class, confidence, every probability."""
        rows = []
        for i, (t, p, pr) in enumerate(zip(self.y_true, self.y_pred, self.proba)):
            row = {"index": int(self.index[i]), "true": self.classes[t], "predicted": self.classes[p],
                   "correct": bool(t == p), "confidence": float(pr[p])}
            if origins is not None:
                row["origin"] = str(origins[self.index[i]])
            row.update({f"p_{c}": float(v) for c, v in zip(self.classes, pr)})
            rows.append(row)
        return rows


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    A class never predicted (or absent) gets 0, silently: ``zero_division=0``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "num_images": int(len(y_true))}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = float(ap), float(ar), float(af)
    out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                        for i, c in enumerate(classes)}
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def evaluate(model, dataset: Dataset, split: str | None, tta: str = "none", *, classes=None,
             name: str = "model", progress: Progress | None = None) -> EvalResult:
    """Evaluate a loaded model on one split (None: every image) of a data set; ``progress(faces
    done, faces)`` follows its batches.

    Raises:
        DataError: the split has no images, or the model's classes do not match the data set's.
    """
    classes = tuple(classes or dataset.class_names)
    if tuple(dataset.class_names) != classes:
        raise DataError(f"The model predicts {len(classes)} classes ({', '.join(classes)}) but the data set has "
                        f"{', '.join(dataset.class_names)}; choose the same class merging as the model was trained with.")
    index = np.arange(len(dataset)) if split is None else np.flatnonzero(dataset.splits == split)
    if len(index) == 0:
        raise DataError(f"{dataset.source}: the split {split!r} has no images; "
                        f"it has {', '.join(sorted(set(dataset.splits.tolist())))}.")
    proba = predict_proba(model, dataset.images[index], tta, progress=progress)
    y_true = dataset.labels[index]
    return EvalResult(classes, split or "all", tta, name, y_true, proba, index,
                      compute_metrics(y_true, proba.argmax(axis=1), classes))


# ------------------------------------------------------------------------- caching
def _cache_file(ref: ModelRef, dataset: Dataset, split: str | None, tta: str) -> Path:
    index = np.arange(len(dataset)) if split is None else np.flatnonzero(dataset.splits == split)
    h = hashlib.sha1(f"{CACHE_VERSION}|{ref.stamp}|{split}|{tta}|{dataset.class_names}".encode())
    h.update(np.ascontiguousarray(dataset.images[index]).tobytes())
    h.update(np.ascontiguousarray(dataset.labels[index]).tobytes())
    folder = rundir.eval_cache_dir(ref.run_dir) if ref.run_dir else (cache_dir() / "eval")
    return folder / f"{h.hexdigest()}.npz"


def _load(file: Path) -> EvalResult | None:
    loaded = files.load_npz(file, ("y_true", "proba", "index"))
    if loaded is None:
        return None  # a damaged cache entry is recomputed
    z, meta = loaded
    try:
        return EvalResult(tuple(meta["classes"]), meta["split"], meta["tta"], meta["model"], z["y_true"],
                          z["proba"], z["index"], meta["metrics"])
    except (KeyError, TypeError):
        return None


def _save(file: Path, res: EvalResult) -> None:
    meta = {"classes": list(res.classes), "split": res.split, "tta": res.tta, "model": res.model, "metrics": res.metrics}
    if read_only():
        return  # a read-only server writes no cache file
    try:
        files.save_npz(file, {"y_true": res.y_true, "proba": res.proba, "index": res.index}, meta)
    except OSError:
        pass  # a read-only run directory only costs the cache


def evaluate_cached(ref: ModelRef, dataset: Dataset, split: str | None, tta: str = "none",
                    load: Callable = load_engine, progress: Progress | None = None) -> tuple[EvalResult, bool]:
    """Evaluate with the on-disk cache; returns ``(result, came_from_cache)``.

    The key covers the model file (path, size, modification time), the split's pixels and
    labels, the class names and the TTA mode, so a retrained model or changed data misses.
    ``load(ref)`` loads the model, only on a miss (the app passes its cached loader).
    """
    file = _cache_file(ref, dataset, split, tta)
    if file.exists():
        res = _load(file)
        if res is not None:
            return res, True
    res = evaluate(load(ref), dataset, split, tta, classes=ref.classes, name=ref.name, progress=progress)
    _save(file, res)
    return res, False


VIEWS = ("all", "most confident mistakes", "least confident correct")


def select_predictions(res: EvalResult, *, true: list[str] | None = None, predicted: list[str] | None = None,
                       correct: bool | None = None, confidence: tuple[float, float] = (0.0, 1.0),
                       view: str = "all", descending: bool = True) -> np.ndarray:
    """Positions (into ``res``) of the predictions that pass the filters, sorted by confidence.

    ``view`` "most confident mistakes" keeps wrong answers, most confident first; "least
    confident correct" keeps right answers, least confident first (where label noise hides).
    """
    keep = np.ones(len(res.y_true), bool)
    if true:
        keep &= np.isin(res.y_true, [res.classes.index(c) for c in true])
    if predicted:
        keep &= np.isin(res.y_pred, [res.classes.index(c) for c in predicted])
    if view == "most confident mistakes":
        correct, descending = False, True
    elif view == "least confident correct":
        correct, descending = True, False
    if correct is not None:
        keep &= (res.y_true == res.y_pred) == correct
    conf = res.confidence
    keep &= (conf >= confidence[0]) & (conf <= confidence[1])
    pos = np.flatnonzero(keep)
    order = np.argsort(-conf[pos] if descending else conf[pos], kind="stable")
    return pos[order]


def disagreements(a: EvalResult, b: EvalResult) -> np.ndarray:
    """Positions where two models, evaluated on the same images, predict different classes."""
    if not np.array_equal(a.index, b.index):
        raise DataError("The two evaluations are not on the same images; use the same data set and split.")
    return np.flatnonzero(a.y_pred != b.y_pred)
