"""The live camera's speed: 640x480 frames with one face (scikit-image's astronaut, moving a
little) through :class:`fer_core.inference.live.LiveAnalyser` one after another, as fast as they go.

    .venv/bin/python benchmarks/bench_live.py [--model default] [--seconds 10]

Prints analysed frames per second, and the time per frame split into finding the face and the
rest (classification, following, drawing). The target: 60 analysed fps or more (the inference engine issue).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import cv2
    import numpy as np
    from skimage import data as skimage_data

    from fer_core.device import quiet_tensorflow
    from fer_core.inference.engine import load_engine
    from fer_core.inference.loader import resolve_model
    from fer_core.inference.live import LIVE_DETECT_SIDE, LiveAnalyser

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    quiet_tensorflow()
    ref = resolve_model(args.model)
    live = LiveAnalyser(load_engine(ref), ref.classes)
    photo = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480))
    frames = []
    for i in range(30):
        f = np.full((480, 640, 3), 90, np.uint8)
        x = 80 + int(20 * np.sin(i / 5))
        f[:, x:x + 480] = photo
        frames.append(f)
    for f in frames[:5]:  # warm up: the graph is traced, the detector pool filled
        live.process(f)
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds / 2:
        live.finder.detect(gray[n % len(gray)], LIVE_DETECT_SIDE)
        n += 1
    detect_ms = (time.perf_counter() - t0) / n * 1000
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        live.process(frames[n % len(frames)])
        n += 1
    per = (time.perf_counter() - t0) / n
    print(f"model {ref.name}: {1 / per:.1f} analysed frames/s at 640x480 with one face ({per * 1000:.1f} ms a frame: "
          f"finding the face {detect_ms:.1f} ms, the rest {per * 1000 - detect_ms:.1f} ms); readout: {live.readout()}")


if __name__ == "__main__":
    main()
