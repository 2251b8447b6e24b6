"""Training dynamics ("dataset cartography", Swayamdipta et al. 2020): how the network learned each face.

After every epoch a run records the probability its model gives the true class of a fixed,
deterministic sample of Training faces (:data:`SAMPLE` of them, or all when there are fewer), in
``dynamics.npz`` in the run directory. Over the epochs each face gets a **confidence** (the mean
of those probabilities), a **variability** (their standard deviation) and a **correctness** (the
share of epochs in which the true class won). Faces then fall in three regions, as the paper
draws them:

- **ambiguous**: the third of the faces whose probability varied most across epochs (the
  network changed its mind about them);
- **easy to learn**: the other faces with confidence >= 0.5;
- **hard to learn**: the other faces with confidence < 0.5, steadily given little probability.
  In FER2013 this is where mislabelled faces gather.

The file is written before the epoch is committed and read back only up to the committed epoch
(:func:`fer_core.runs.rundir.read_state`), so a crash between the two never leaves an extra row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_core import files
from fer_core.data.loading import load_dataset
from fer_core.errors import DataError
from fer_core.inference.forward import predict_proba
from fer_core.runs import rundir

#: Training faces followed per run; 2,000 costs one forward pass over them per epoch
#: (``benchmarks/bench_explore.py`` measures it).
SAMPLE = 2000
#: The share of faces, those whose true-class probability varied most, that are ambiguous.
AMBIGUOUS = 1 / 3
REGIONS = ("easy", "ambiguous", "hard")


def sample_indices(num_train: int, size: int = SAMPLE) -> np.ndarray:
    """The Training faces a run follows: the same for every run on the same data (sorted indices)."""
    if num_train <= size:
        return np.arange(num_train)
    return np.sort(np.random.default_rng(0).choice(num_train, size, replace=False))


class DynamicsLog:
    """Records, epoch by epoch, the true class's probability of the sampled faces (see the module)."""

    def __init__(self, run_dir: str | os.PathLike, images: np.ndarray, labels: np.ndarray, start_epoch: int):
        self.run_dir = run_dir
        self.index = sample_indices(len(labels))
        self.images, self.labels = images[self.index], labels[self.index]
        old = read_dynamics(run_dir, start_epoch)
        same = old is not None and np.array_equal(old.index, self.index) and np.array_equal(old.labels, self.labels)
        self.epochs = list(old.epochs) if same else []
        self.rows = list(zip(old.probabilities, old.correct)) if same else []

    def record(self, epoch: int, model) -> None:
        """Measure the sample with ``model`` after ``epoch`` and write the file (atomically)."""
        proba = predict_proba(model, self.images)
        keep = [i for i, e in enumerate(self.epochs) if e < epoch]  # a re-trained epoch replaces its row
        row = (proba[np.arange(len(self.labels)), self.labels].astype(np.float32),
               (proba.argmax(axis=1) == self.labels).astype(np.uint8))
        self.rows = [self.rows[i] for i in keep] + [row]
        self.epochs = [self.epochs[i] for i in keep] + [epoch]
        files.save_npz(Path(self.run_dir) / rundir.DYNAMICS,
                       {"index": self.index, "labels": self.labels, "epochs": np.asarray(self.epochs),
                        "probabilities": np.stack([r[0] for r in self.rows]),
                        "correct": np.stack([r[1] for r in self.rows])}, {"sample": len(self.index)})


@dataclass
class Dynamics:
    """What a run recorded: the sampled faces' Training indices and labels, and per epoch their
    true-class probabilities (``probabilities[e, i]``) and whether the true class won (``correct``)."""

    index: np.ndarray
    labels: np.ndarray
    epochs: np.ndarray
    probabilities: np.ndarray
    correct: np.ndarray

    def cartography(self, classes: tuple[str, ...] | None = None) -> dict:
        """Per face its confidence, variability and correctness (all in [0, 1]) and region, and
        how many faces each region holds (they add up to the faces). ``true``: the class name
        (with ``classes``), else its number."""
        p = self.probabilities
        confidence, variability = p.mean(axis=0), p.std(axis=0)
        correct = self.correct.mean(axis=0)
        cut = float(np.quantile(variability, 1 - AMBIGUOUS)) if len(variability) else 0.0
        region = np.where((variability >= cut) & (variability > 0), "ambiguous",
                          np.where(confidence >= 0.5, "easy", "hard"))
        faces = [{"index": int(i), "true": classes[int(t)] if classes else int(t), "confidence": round(float(c), 4),
                  "variability": round(float(v), 4), "correctness": round(float(k), 4), "region": str(r)}
                 for i, t, c, v, k, r in zip(self.index, self.labels, confidence, variability, correct, region)]
        return {"epochs": len(self.epochs), "faces": faces, "ambiguous_from": round(cut, 4),
                "regions": {name: int((region == name).sum()) for name in REGIONS}}


def read_dynamics(run_dir: str | os.PathLike, up_to: int | None = None) -> Dynamics | None:
    """A run's recorded dynamics up to its committed epoch (or ``up_to``); None when it has none
    (runs trained before this was recorded, or a damaged file)."""
    loaded = files.load_npz(Path(run_dir) / rundir.DYNAMICS, ("index", "labels", "epochs", "probabilities", "correct"))
    if loaded is None:
        return None
    arrays, _ = loaded
    n, e = len(arrays["index"]), len(arrays["epochs"])
    if arrays["labels"].shape != (n,) or arrays["probabilities"].shape != (e, n) or arrays["correct"].shape != (e, n):
        return None  # a damaged file: as if none (a resume records it anew)
    last = rundir.read_state(run_dir).epoch if up_to is None else up_to
    keep = arrays["epochs"] <= last
    if not keep.any():
        return None
    return Dynamics(arrays["index"], arrays["labels"], arrays["epochs"][keep], arrays["probabilities"][keep],
                    arrays["correct"][keep])


def cartography_with_faces(run_dir: str | os.PathLike, load=None) -> tuple[dict, np.ndarray] | None:
    """A run's cartography with class names, and the followed faces (their Training images, in
    the same order), or None when the run recorded no dynamics. ``load(source, merge)`` loads
    the run's data set (default :func:`fer_core.data.loading.load_dataset`)."""
    found = read_dynamics(run_dir)
    if found is None:
        return None
    cfg = rundir.read_config(run_dir)
    ds = (load or (lambda source, merge: load_dataset(source, merge=merge)))(cfg.data, cfg.merge)
    train = ds.subset("Training")
    if len(train) <= int(found.index.max()) or not np.array_equal(train.labels[found.index], found.labels):
        raise DataError(f"{cfg.data}: its Training split is not the one {run_dir} was trained on (other faces or "
                        "labels), so the followed faces cannot be shown.")
    classes = rundir.read_classes(run_dir) or ds.class_names
    return found.cartography(tuple(classes)), train.images[found.index]


def runs_with_dynamics() -> list[Path]:
    """The runs under ``data/runs`` that recorded their training dynamics, newest first."""
    return [run for run in rundir.run_dirs() if (run / rundir.DYNAMICS).is_file()]


def dynamics_stamp(run_dir: str | os.PathLike) -> float:
    """When a run's dynamics last changed (0 when it has none): a cache key."""
    path = Path(run_dir) / rundir.DYNAMICS
    return path.stat().st_mtime if path.is_file() else 0.0
