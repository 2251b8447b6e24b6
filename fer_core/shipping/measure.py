"""What a release measures of the file it ships: accuracy on PublicTest and PrivateTest with every
TTA (timed), and its speed on this machine (the card's numbers)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from fer_core.inference.evaluate import evaluate
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES, predict_proba


def measure_speed(model, faces: np.ndarray, repeat: int = 20) -> dict:
    """Single-face latency (median ms, default TTA and none) and batch throughput (faces/s), after warm-up."""
    out = {}
    for tta in ("none", DEFAULT_TTA):
        predict_proba(model, faces[:1], tta)
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            predict_proba(model, faces[i:i + 1], tta)
            times.append(time.perf_counter() - t0)
        out[f"latency_ms_{tta}"] = round(float(np.median(times)) * 1000, 1)
    batch = faces[:2048]
    predict_proba(model, batch[:256])
    t0 = time.perf_counter()
    predict_proba(model, batch)
    out["throughput_faces_per_s"] = round(len(batch) / (time.perf_counter() - t0))
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    return out


def measure_release(model, ds, log, name: str = "default") -> dict:
    """``{"results", "speed"}`` of a model to ship: PublicTest and PrivateTest with every TTA
    (timed), then its speed."""
    results = {}
    for split in ("PublicTest", "PrivateTest"):
        for tta in TTA_MODES:
            t0 = time.perf_counter()
            res = evaluate(model, ds, split, tta, name=name)
            seconds = time.perf_counter() - t0
            results[f"{split}/{tta}"] = {**res.to_json(), "seconds": round(seconds, 2)}
            log(f"{split:11s} TTA {tta:8s} accuracy {res.metrics['accuracy']:.4f}  macro F1 "
                f"{res.metrics['macro_f1']:.4f}  ({seconds:.1f} s)")
    speed = measure_speed(model, ds.subset("PrivateTest").images)
    log(f"speed: {speed}")
    return {"results": results, "speed": speed}
