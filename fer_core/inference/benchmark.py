"""``benchmark``: every model by runtime, with its accuracy, speed and size, in one run.

Each model runs as the app runs it (the inference engine's LiteRT artifact) and in Keras. For
each row: accuracy on one split without TTA and with flip; ``faces_per_s``, batches without TTA
(the best of the rounds); ``ms_per_face``, one face without TTA (the median of
:data:`SINGLE` faces, the best round). Speeds are measured interleaved, every row once per round,
so that their ratios hold on a shared, busy machine.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import numpy as np

from fer_core.inference.engine import load_engine
from fer_core.inference.forward import predict_proba
from fer_core.inference.loader import ModelRef

RUNTIMES = ("litert", "keras")
#: Single faces timed per round (their median is the round's ``ms_per_face``).
SINGLE = 25
#: Faces per throughput batch (the split's first faces).
BATCH = 2048


@dataclass
class Entry:
    """One row: a model in one runtime, ready to call (an engine or a Keras model)."""

    model: str
    runtime: str
    classifier: object
    params: int
    size_mb: float


def entries_for(ref: ModelRef, runtimes: tuple[str, ...] = RUNTIMES) -> list[Entry]:
    """The rows of one model: its engine (when an artifact runs it) and its Keras model."""
    engine = load_engine(ref)
    out = []
    params = engine.meta.get("params")
    if "litert" in runtimes and engine.artifact is not None:
        params = params or int(engine.keras.count_params())
        out.append(Entry(ref.name, engine.runtime, engine, params, len(engine.artifact) / 1e6))
    if "keras" in runtimes:
        keras_model = engine.keras
        out.append(Entry(ref.name, "Keras", keras_model, int(keras_model.count_params()), ref.path.stat().st_size / 1e6))
    return out


def machine() -> str:
    """This machine, as the benchmark reports it."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'CPU'}"


def run_benchmark(entries: list[Entry], images: np.ndarray, labels: np.ndarray, rounds: int = 3,
                  log=lambda line: None) -> list[dict]:
    """Measure every entry (see the module's docstring); one dict per entry, in order."""
    rows = []
    for e in entries:
        acc = {tta: float((predict_proba(e.classifier, images, tta).argmax(1) == labels).mean()) for tta in ("none", "flip")}
        rows.append({"model": e.model, "runtime": e.runtime, "accuracy": round(acc["none"], 6),
                     "accuracy_flip": round(acc["flip"], 6), "faces_per_s": 0, "ms_per_face": float("inf"),
                     "size_mb": round(e.size_mb, 2), "params": e.params})
        log(f"{e.model} ({e.runtime}): accuracy {acc['none']:.4f}, with flip {acc['flip']:.4f}")
    batch = images[:BATCH]
    for e in entries:  # warm-up: the first calls compile graphs and allocate interpreters
        predict_proba(e.classifier, batch[:256])
        predict_proba(e.classifier, batch[:1])
    for r in range(rounds):
        for e, row in zip(entries, rows):
            t0 = time.perf_counter()
            predict_proba(e.classifier, batch)
            row["faces_per_s"] = max(row["faces_per_s"], round(len(batch) / (time.perf_counter() - t0)))
            times = []
            for i in range(SINGLE):
                t0 = time.perf_counter()
                predict_proba(e.classifier, batch[i % len(batch)][None])
                times.append(time.perf_counter() - t0)
            row["ms_per_face"] = round(min(row["ms_per_face"], float(np.median(times)) * 1000), 3)
        log(f"round {r + 1} of {rounds}: " + ", ".join(f"{row['model']} ({row['runtime']}) {row['faces_per_s']:,}/s"
                                                     for row in rows))
    return rows
