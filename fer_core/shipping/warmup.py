"""Prepare for class: compute ahead what a lesson opens, into the caches the pages read.

A lesson opens the evaluations on the test splits (Evaluate, with the default TTA) of the app's
model and of the shipped ones, and Explore's map (the fast model's PublicTest, 1,000 faces, PCA
and t-SNE; the others' PCA). Computed in class on a busy server they take minutes; computed here they go to the
on-disk caches (``data/cache/eval``, ``data/cache/embed``) that the pages read first, so in class
they open in seconds. A step already cached costs a file read and is reported as such. Runs that
recorded their training dynamics are read once too, so a damaged one shows up now, not in class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fer_core.data.dataset import Dataset
from fer_core.data.loading import load_dataset
from fer_core.inference.evaluate import evaluate_cached
from fer_core.inference.explore import embed_cached
from fer_core.inference.forward import DEFAULT_TTA
from fer_core.errors import FerError
from fer_core.inference.loader import DEFAULT_MODEL, FAST_MODEL, resolve_model, shipped_model, speed_model
from fer_core.training.dynamics import read_dynamics, runs_with_dynamics

#: Explore's map as the page opens it (``pages/explore.py``): its default sample of faces.
MAP_SAMPLE = 1000


@dataclass
class Step:
    """One thing a lesson opens: ``kind`` "evaluation", "map" or "dynamics"."""

    kind: str
    model: str
    split: str = ""
    method: str = ""

    @property
    def title(self) -> str:
        name = f"the {self.model} model" if self.model in (DEFAULT_MODEL, FAST_MODEL) else Path(self.model).name
        if self.kind == "evaluation":
            return f"evaluation of {name} on {self.split} (TTA {DEFAULT_TTA})"
        if self.kind == "map":
            return f"Explore map of {name} on {self.split} ({self.method}, {MAP_SAMPLE:,} faces)"
        return f"training dynamics of {name}"


def plan() -> list[Step]:
    """What a lesson opens: Evaluate opens on the app's model (the shipped default, or the run the
    settings chose), Explore on the fast model (else the app's); both shipped models are evaluated."""
    try:
        ref = resolve_model(None)
        app = ref.name if ref.name in (DEFAULT_MODEL, FAST_MODEL) else str(ref.run_dir or ref.path)
    except FerError:
        app = None
    shipped = [m for m in (DEFAULT_MODEL, FAST_MODEL) if shipped_model(m) is not None]
    evaluated = list(dict.fromkeys([m for m in (app, *shipped) if m]))
    steps = [Step("evaluation", m, split) for m in evaluated for split in ("PrivateTest", "PublicTest")]
    explored = speed_model() or app
    if explored:
        steps += [Step("map", explored, "PublicTest", method) for method in ("pca", "tsne")]
    steps += [Step("map", m, "PublicTest", "pca") for m in evaluated if m != explored]
    return steps + [Step("dynamics", str(run)) for run in runs_with_dynamics()]


def warm(source: str, steps: list[Step] | None = None, *, load: Callable | None = None,
         dataset: Callable[[str, str], Dataset] | None = None,
         on_step: Callable[[int, int, Step], None] | None = None,
         progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run the steps (default :func:`plan`) on the data set ``source``; returns per step its title,
    whether it was already cached and the seconds it took. ``on_step(k, steps, step)`` is called
    before each step, ``progress(faces done, faces)`` during one; ``load(ref)`` loads a model and
    ``dataset(source, merge)`` a data set (default: the inference engine, :func:`load_dataset`;
    the server passes its own caches)."""
    steps = plan() if steps is None else steps
    dataset = dataset or (lambda src, merge: load_dataset(src, merge=merge))
    datasets: dict[str, Dataset] = {}
    out = []
    for k, step in enumerate(steps):
        if on_step is not None:
            on_step(k, len(steps), step)
        started, cached = time.monotonic(), True
        if step.kind == "dynamics":
            read_dynamics(step.model)
        else:
            ref = resolve_model(step.model)
            if ref.merge not in datasets:
                datasets[ref.merge] = dataset(source, ref.merge)
            kwargs = {"progress": progress, **({"load": load} if load is not None else {})}
            if step.kind == "evaluation":
                _, cached = evaluate_cached(ref, datasets[ref.merge], step.split, DEFAULT_TTA, **kwargs)
            else:
                _, cached = embed_cached(ref, datasets[ref.merge], step.split, step.method, MAP_SAMPLE, **kwargs)
        out.append({"step": step.title, "cached": cached, "seconds": round(time.monotonic() - started, 2)})
    return out
