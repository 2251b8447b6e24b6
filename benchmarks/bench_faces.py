"""Benchmark the face detectors: speed on a photo, and what aligning turned faces buys.

1. Speed (after warm-up, medians): detection alone on a 640x480 photo (YuNet and Haar), and a
   whole one-face photo (decode, detect, align, classify without TTA) with the shipped model.
2. Alignment: FER2013 PublicTest faces (scaled to 144 px, edges replicated around them) turned
   by 0, +-10, +-20 and +-30 degrees; YuNet finds each one, and the shipped model classifies the
   crop with and without turning the face upright first. A face not found counts as wrong.

Usage: FER2013_DIR=... python benchmarks/bench_faces.py [--faces 400] [--repeat 30]
"""

from __future__ import annotations

import io
import os
import statistics
import time

import cv2
import numpy as np
from PIL import Image

from common import options, shipped_engine

from fer_core.data.loading import load_dataset
from fer_core.inference.faces import crop_face, get_detector
from fer_core.inference.photo import analyse
from fer_core.inference.forward import predict_proba


def median_ms(fn, repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def speed(model, classes, repeat: int) -> None:
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((640, 480))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    gray = np.asarray(photo.convert("L"))
    print(f"Speed, 640x480 photo with one face, {os.cpu_count()} CPU cores, median of {repeat} after warm-up:")
    for name in ("yunet", "haar"):
        det = get_detector(name)
        print(f"  detection, {name:<5}                {median_ms(lambda: det.detect(gray), repeat):7.1f} ms")
    for name in ("yunet", "haar"):
        ms = median_ms(lambda: analyse([("p.jpg", jpeg)], model, classes, tta="none", detector=name), repeat)
        print(f"  whole photo, {name:<5} (decode, detect, align, classify) {ms:7.1f} ms")


def alignment(model, faces: np.ndarray, labels: np.ndarray) -> None:
    det = get_detector("yunet")
    side = 144
    print(f"\nAlignment: {len(faces)} PublicTest faces turned, found by YuNet, classified by the shipped model "
          "(TTA none); accuracy (faces found)")
    print(f"  {'turned':>7}  {'found':>6}  {'not aligned':>11}  {'aligned':>8}")
    for degrees in (0, -10, 10, -20, 20, -30, 30):
        plain, upright, found = [], [], 0
        for face in faces:
            big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
            canvas = cv2.copyMakeBorder(big, side, side, side, side, cv2.BORDER_REPLICATE)
            m = cv2.getRotationMatrix2D((1.5 * side, 1.5 * side), degrees, 1.0)
            canvas = cv2.warpAffine(canvas, m, canvas.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
            boxes = det.detect(canvas)
            near = [b for b in boxes if abs(b.x + b.w / 2 - 1.5 * side) < side / 2 and abs(b.y + b.h / 2 - 1.5 * side) < side / 2]
            if not near:
                plain.append(None)
                upright.append(None)
                continue
            found += 1
            box = max(near, key=lambda b: b.score)
            plain.append(crop_face(canvas, box, frame=det.frame))
            upright.append(crop_face(canvas, box, frame=det.frame, angle=det.upright_angle(canvas, box)))
        accs = []
        for crops in (plain, upright):
            idx = [i for i, c in enumerate(crops) if c is not None]
            right = 0
            if idx:
                pred = predict_proba(model, np.stack([crops[i] for i in idx])).argmax(1)
                right = int((pred == labels[idx]).sum())
            accs.append(right / len(faces))
        print(f"  {degrees:>+6}°  {found / len(faces):>6.1%}  {accs[0]:>11.2%}  {accs[1]:>8.2%}", flush=True)
    direct = float((predict_proba(model, faces).argmax(1) == labels).mean())
    print(f"  (the same faces given to the model directly, no detection: {direct:.2%})")


def main() -> None:
    args = options(__doc__, faces=400, repeat=30)
    model, classes = shipped_engine()
    speed(model, classes, args.repeat)
    root = os.environ.get("FER2013_DIR")
    if not root:
        print("\n(set FER2013_DIR for the alignment benchmark)")
        return
    val = load_dataset(root).subset("PublicTest")
    pick = np.random.default_rng(0).choice(len(val), min(args.faces, len(val)), replace=False)
    alignment(model, val.images[pick], val.labels[pick])


if __name__ == "__main__":
    main()
