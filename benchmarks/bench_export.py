"""Benchmark exports against the Keras model: PrivateTest accuracy, file size, per-face latency.

Every format and quantization is exported from the same model, loaded in its own runtime
(onnxruntime, LiteRT, TensorFlow) and run on all of PrivateTest, without TTA and with the app's
flip TTA (the mean over each face and its mirror image, done outside the graph).

Usage: FER2013_DIR=/path/to/fer2013 python benchmarks/bench_export.py [--model default]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.data.loading import load_dataset  # noqa: E402
from fer_core.shipping.export import ExportedModel, export_model  # noqa: E402
from fer_core.inference.loader import load_model, resolve_model  # noqa: E402
from fer_core.inference.forward import predict_proba  # noqa: E402

VARIANTS = [("onnx", "none"), ("onnx", "dynamic"), ("onnx", "float16"), ("tflite", "none"), ("tflite", "dynamic"),
            ("tflite", "float16"), ("saved_model", "none")]


def latency_ms(predict, face: np.ndarray, repeats: int = 100) -> float:
    """Median milliseconds of one single-face call, after warm-up."""
    for _ in range(5):
        predict(face)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(face)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def accuracies(predict, faces: np.ndarray, labels: np.ndarray, batch: int = 256) -> tuple[float, float]:
    """(no TTA, flip TTA) accuracy."""
    plain = np.concatenate([predict(faces[i:i + batch]) for i in range(0, len(faces), batch)])
    mirror = np.concatenate([predict(faces[i:i + batch, :, ::-1]) for i in range(0, len(faces), batch)])
    return float((plain.argmax(1) == labels).mean()), float(((plain + mirror).argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    root = os.environ.get("FER2013_DIR")
    if not root:
        sys.exit("Set FER2013_DIR to the FER2013 image folder.")
    ref = resolve_model(args.model)
    model = load_model(ref)
    test = load_dataset(root, merge=ref.merge).subset("PrivateTest")
    faces, labels = np.ascontiguousarray(test.images[..., None]), test.labels
    print(f"machine: {os.cpu_count()} CPU cores; model {ref.name}; PrivateTest {len(labels):,} faces")
    print(f"{'format':12s} {'quantize':9s} {'size MB':>8s} {'acc none':>9s} {'acc flip':>9s} {'ms/face':>8s} "
          f"{'export s':>9s}")

    def keras_predict(x):
        return predict_proba(model, x[..., 0], "none")

    acc = accuracies(keras_predict, faces, labels)
    print(f"{'keras':12s} {'-':9s} {ref.path.stat().st_size / 1e6:8.2f} {acc[0]:9.4f} {acc[1]:9.4f} "
          f"{latency_ms(keras_predict, faces[:1]):8.2f} {'-':>9s}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, quantize in VARIANTS:
            result = export_model(args.model, fmt, Path(tmp) / f"{fmt}-{quantize}", quantize)
            loaded = ExportedModel(result.folder)
            acc = accuracies(loaded.predict, faces, labels)
            print(f"{fmt:12s} {quantize:9s} {result.size_bytes / 1e6:8.2f} {acc[0]:9.4f} {acc[1]:9.4f} "
                  f"{latency_ms(loaded.predict, faces[:1]):8.2f} {result.seconds:9.1f}", flush=True)


if __name__ == "__main__":
    main()
