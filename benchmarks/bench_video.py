"""Benchmark video analysis: analysed frames per second, and memory over a long video.

1. Speed: 640x480 clips (MJPEG, 30 fps, 20 s) with one and with two faces (scikit-image's
   public-domain astronaut), every frame analysed (detect, track, align, classify in batches)
   with the shipped model, TTA none; without and with the annotated WebM.
2. Memory: a long clip (default 10 minutes, 640x480 VP8 at 10 fps, one face drifting),
   analysed at 5 frames per second; the process's resident memory is printed as it goes.

Usage: python benchmarks/bench_video.py [--seconds 20] [--minutes 10]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from common import options, shipped_engine

from fer_core.inference.video import analyse_video

W, H = 640, 480


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def frames(faces: int, n: int):
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if faces == 1:
        base = cv2.resize(photo, (W, H))
        for i in range(n):
            yield np.roll(base, round(20 * np.sin(i / 15)), axis=1)
        return
    head = cv2.resize(photo[30:230, 140:310], (136, 160))
    for i in range(n):
        frame = np.full((H, W, 3), 110, np.uint8)
        dx = round(20 * np.sin(i / 15))
        for x, y in ((80 + dx, 150), (400 - dx, 130)):
            frame[y:y + 160, x:x + 136] = head
        yield frame


def write(path: Path, codec: str, fps: float, source) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (W, H))
    for frame in source:
        writer.write(frame)
    writer.release()
    return path


def speed(model, classes, seconds: int, folder: Path) -> None:
    print(f"Speed: 640x480, 30 fps source, {seconds} s, every frame analysed, TTA none, {os.cpu_count()} CPU cores")
    analyse_video(write(folder / "warm.avi", "MJPG", 30, frames(1, 10)), model, classes, fps=30, tta="none")
    for faces in (1, 2):
        clip = write(folder / f"faces{faces}.avi", "MJPG", 30, frames(faces, 30 * seconds))
        for out in (None, folder / "annotated.webm"):
            t0 = time.perf_counter()
            result = analyse_video(clip, model, classes, fps=30, tta="none", out=out)
            dt = time.perf_counter() - t0
            found = sum(len(f.faces) for f in result.frames) / len(result.frames)
            print(f"  {faces} face(s) ({found:.2f} found per frame), {'with' if out else 'no':>4} annotated WebM: "
                  f"{len(result.frames) / dt:6.1f} analysed frames/s ({len(result.frames)} frames in {dt:.1f} s)",
                  flush=True)


def memory(model, classes, minutes: float, folder: Path) -> None:
    n = round(minutes * 60 * 10)
    t0 = time.perf_counter()
    clip = write(folder / "long.webm", "VP80", 10, frames(1, n))
    print(f"\nMemory: a {minutes:g}-minute 640x480 clip ({n} frames, {clip.stat().st_size / 1e6:.1f} MB, written in "
          f"{time.perf_counter() - t0:.0f} s), analysed at 5 frames/s, resident memory as it goes:")
    marks = list(np.linspace(0, minutes * 60, 11)[1:])  # print at every tenth of the video
    start = rss_mb()

    def progress(done: float, total: float | None) -> None:
        if marks and done >= marks[0] - 1:
            marks[:] = [m for m in marks if m - 1 > done]
            print(f"  {done / 60:5.1f} min  {rss_mb():7.1f} MB", flush=True)

    t0 = time.perf_counter()
    result = analyse_video(clip, model, classes, fps=5, tta="none", progress=progress)
    print(f"  before {start:.1f} MB, after {rss_mb():.1f} MB; {len(result.frames)} frames in "
          f"{time.perf_counter() - t0:.0f} s; {len(result.tracks())} track(s)")


def main() -> None:
    args = options(__doc__, seconds=20, minutes=10.0)
    model, classes = shipped_engine()
    with tempfile.TemporaryDirectory() as tmp:
        speed(model, classes, args.seconds, Path(tmp))
        if args.minutes > 0:
            memory(model, classes, args.minutes, Path(tmp))


if __name__ == "__main__":
    main()
