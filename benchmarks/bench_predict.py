"""Benchmark prediction: single-photo latency and batch throughput of 48x48 crops, after warm-up.

The model is loaded once. The photo is skimage's public-domain astronaut picture (one face)
resized to 640x480 and JPEG-encoded; the latency covers decode, detection and classification.

Usage: python benchmarks/bench_predict.py [--model MODEL_OR_RUN_DIR] [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.inference.faces import default_detector  # noqa: E402
from fer_core.data.images import open_image  # noqa: E402
from fer_core.inference.engine import load_engine  # noqa: E402
from fer_core.inference.loader import resolve_model  # noqa: E402
from fer_core.inference.photo import analyse  # noqa: E402
from fer_core.inference.forward import predict_proba  # noqa: E402


def photo() -> bytes:
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.astronaut()).resize((480, 480)).crop((0, 0, 480, 480))
    canvas = Image.new("RGB", (640, 480), (90, 110, 130))
    canvas.paste(im, (80, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--crops", type=int, default=2048)
    args = parser.parse_args()
    ref = resolve_model(args.model)
    t0 = time.perf_counter()
    model = load_engine(ref)
    print(f"machine: {os.cpu_count()} CPU cores; model {ref.name} ({ref.path.stat().st_size / 1e6:.1f} MB), "
          f"loaded once in {time.perf_counter() - t0:.2f} s")
    jpeg = photo()
    gray = np.asarray(open_image(jpeg).convert("L"))
    for tta in ("none", "flip"):  # warm-up: graph tracing, thread pools
        analyse([("p.jpg", jpeg)], model, ref.classes, tta=tta)
    (res,) = analyse([("p.jpg", jpeg)], model, ref.classes)
    print(f"photo 640x480 JPEG, {len(res.faces)} face(s) found at {[f.box.as_list() for f in res.faces]}")
    print(f"\nsingle photo, median (best) of {args.repeat}:")
    for name, fn in [("decode", lambda: open_image(jpeg)), ("detect", lambda: default_detector().detect(gray))]:
        med, best = timed(fn, args.repeat)
        print(f"  {name:28s} {med * 1000:7.1f} ms ({best * 1000:.1f})")
    for tta in ("none", "flip", "tencrop"):
        analyse([("p.jpg", jpeg)], model, ref.classes, tta=tta)
        med, best = timed(lambda: analyse([("p.jpg", jpeg)], model, ref.classes, tta=tta), args.repeat)
        print(f"  {'end to end, TTA ' + tta:28s} {med * 1000:7.1f} ms ({best * 1000:.1f})")
    med, best = timed(lambda: analyse([("p.jpg", jpeg)], model, ref.classes, explain=True), max(args.repeat // 4, 3))
    print(f"  {'end to end + Grad-CAM':28s} {med * 1000:7.1f} ms ({best * 1000:.1f})")

    crops = np.random.default_rng(0).integers(0, 255, (args.crops, 48, 48), dtype=np.uint8)
    print(f"\nbatch throughput, {args.crops} 48x48 crops (batches of 256):")
    for tta in ("none", "flip", "tencrop"):
        predict_proba(model, crops[:256], tta)
        med, best = timed(lambda: predict_proba(model, crops, tta), 3)
        print(f"  TTA {tta:8s} {args.crops / med:9.0f} faces/s (best {args.crops / best:.0f})")


if __name__ == "__main__":
    main()
