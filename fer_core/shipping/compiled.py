"""A shipped model compiled for the inference engine, its artifact chosen by measurement.

The candidates of :data:`fer_core.inference.engine.QUANTIZE` are compiled from the shipped file and
evaluated on PublicTest with the default TTA; the fastest whose accuracy is at most
:data:`~fer_core.inference.engine.MAX_DROP` below Keras' there is written beside ``model.keras``
(float32 only when 8-bit falls short: on this CPU it ran at a third of 8-bit's speed for every
shipped model)
(see the engine's artifact protocol). PrivateTest is evaluated once for the chosen artifact, to
report its parity on the card, never to choose. With no candidate close enough, nothing is
written and the app runs the model in Keras.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from fer_core.inference.engine import (LABELS, MAX_DROP, QUANTIZE, Engine, convert, file_id, meta_for, write_artifact,
                                       write_keras_choice)
from fer_core.inference.evaluate import evaluate
from fer_core.inference.forward import DEFAULT_TTA, predict_proba
from fer_core.inference.loader import ModelRef, load_model
from fer_core.runs import rundir
from fer_core.shipping.measure import measure_speed


def throughput(model, faces: np.ndarray, rounds: int = 2) -> float:
    """Faces per second in batches without TTA (best of ``rounds``, after a warm-up)."""
    predict_proba(model, faces[:256])
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        predict_proba(model, faces)
        best = max(best, len(faces) / (time.perf_counter() - t0))
    return best


def compile_shipped(folder: Path, ds, keras_results: dict, name: str, log=print) -> dict:
    """Compile the model in ``folder``, choose its artifact, write it there; return what the
    card says of it (``metrics.json``'s ``engine``). ``keras_results``: the release's
    ``results`` (``"PublicTest/flip"`` etc.), measured on the same file with Keras."""
    ref = ModelRef(rundir.final_model(folder), name, rundir.read_classes(folder) or tuple(ds.class_names))
    model = load_model(ref)
    public = ds.subset("PublicTest")
    keras_public = keras_results[f"PublicTest/{DEFAULT_TTA}"]["accuracy"]
    candidates, chosen = [], None
    for quantize in QUANTIZE:
        data = convert(model, quantize)
        meta = meta_for(ref, model, quantize)
        engine = Engine(ref, data, meta)
        accuracy = float((predict_proba(engine, public.images, DEFAULT_TTA).argmax(1) == public.labels).mean())
        speed = throughput(engine, public.images[:2048])
        row = {"quantize": quantize, "runtime": LABELS[quantize], "public_accuracy": round(accuracy, 6),
               "faces_per_s": round(speed), "mb": round(len(data) / 1e6, 2)}
        log(f"{LABELS[quantize]}: PublicTest {accuracy:.4f} ({DEFAULT_TTA}; Keras {keras_public:.4f}), {speed:.0f} faces/s")
        candidates.append(row)
        if accuracy >= keras_public - MAX_DROP and (chosen is None or speed > chosen[0]["faces_per_s"]):
            chosen = (row, data, engine)
        if chosen is not None and quantize == "dynamic":
            break  # float32 never outran 8-bit here (default 271 vs 837, fast 969 vs 2,028 faces/s): not compiled
    keras_speed = throughput(model, public.images[:2048])
    out = {"candidates": candidates, "keras_faces_per_s": round(keras_speed), "rule": (
        f"the fastest within {MAX_DROP * 100:.1f} points of Keras on PublicTest ({DEFAULT_TTA})"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    if chosen is None:
        why = f"at release no LiteRT artifact came within {MAX_DROP * 100:.1f} points of Keras on PublicTest"
        log(f"no artifact kept: {why}")
        write_keras_choice(folder, file_id(ref.path), why)
        return {**out, "runtime": "Keras"}
    row, data, engine = chosen
    private = {}
    for tta in ("none", DEFAULT_TTA):
        private[tta] = {"keras": keras_results[f"PrivateTest/{tta}"]["accuracy"],
                        "engine": evaluate(engine, ds, "PrivateTest", tta, name=name).metrics["accuracy"]}
    engine.meta["parity"] = {"split": "PublicTest", "tta": DEFAULT_TTA, "keras": keras_public,
                             "engine": row["public_accuracy"], "private": private}
    write_artifact(folder, data, engine.meta)
    speed = measure_speed(engine, public.images)
    log(f"kept {row['runtime']}: PrivateTest {DEFAULT_TTA} {private[DEFAULT_TTA]['engine']:.4f} "
        f"(Keras {private[DEFAULT_TTA]['keras']:.4f}); {speed}")
    return {**out, "runtime": row["runtime"], "quantize": row["quantize"], "parity": engine.meta["parity"],
            "speed": speed}
