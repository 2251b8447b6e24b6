"""A class's server under hostile inputs and a busy machine: what it costs, and that nothing is given up.

1. ``server``: a read-only server (``FER_READ_ONLY=1``, uploads capped at 100 MB as README's class
   command does) on loopback; its resident memory at start, at its peak (read every 0.5 s) and
   ``--settle`` seconds after the sessions close, while Chromium sessions at once:
   - two upload an MJPEG AVI whose frames are 8192x8192 (refused before any frame is decoded);
   - two upload four large noisy JPEGs each (over 100 MB together: the last is refused by name).
   (Exports are not offered on a read-only server: ``tests/test_tracker.py`` shows it.)
2. ``jobs``: the cores saturated by busy processes (two per core), then a tiny job submitted: the
   seconds to its worker's first heartbeat and to its first batch, and how the job ended.

    .venv/bin/python benchmarks/bench_hostile.py [--part server|jobs|all] [--settle 60]

Needs Debian's Chromium (/usr/bin/chromium) and Playwright (requirements-dev.txt) for ``server``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_class import BROWSER_ARGS, rss_mb  # noqa: E402
from tests.test_e2e import CHROMIUM, Server  # noqa: E402


def huge_video(path: Path, side: int = 8192, frames: int = 10) -> Path:
    """An MJPEG AVI of smooth ``side`` x ``side`` frames (small on disk, 200 MB each decoded)."""
    import cv2

    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    frame = np.dstack([np.tile(ramp, (side, 1))] * 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (side, side))
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path


def noisy_jpeg(path: Path, side: int, seed: int) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)).save(path, quality=100)
    return path


async def student(browser, url: str, act, timeout: float) -> str:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    page.set_default_timeout(timeout * 1000)
    try:
        return await act(page, url)
    except Exception as exc:  # a failed session is a figure, not a crash of the benchmark
        return f"failed: {type(exc).__name__}: {str(exc)[:160]}"
    finally:
        await ctx.close()


async def upload_video(page, url: str, video: Path) -> str:
    await page.goto(f"{url}/predict", wait_until="domcontentloaded")
    await page.get_by_text("A video", exact=True).click()
    await page.get_by_text("Frames analysed per second of video").wait_for()  # the video uploader is in place
    await page.locator('input[type="file"]').first.set_input_files(str(video))
    await page.get_by_text("megapixels a frame").first.wait_for()
    return "video refused before decoding"


async def upload_photos(page, url: str, photos: list[Path]) -> str:
    await page.goto(f"{url}/predict", wait_until="domcontentloaded")
    await page.locator('input[type="file"]').first.set_input_files([str(p) for p in photos])
    await page.get_by_text("Not analysed:").first.wait_for()
    await page.get_by_text(re.compile("No face found in|what the model saw")).first.wait_for()
    return "the photos within 100 MB analysed, the rest refused by name"


async def visit(page, url: str) -> str:
    await page.goto(f"{url}/predict", wait_until="domcontentloaded")
    await page.get_by_text("Try it").first.wait_for()
    return "Predict opened"


def server_part(settle: float, timeout: float) -> None:
    from playwright.async_api import async_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    video = huge_video(work / "huge.avi")
    photos = [noisy_jpeg(work / f"big-{i}.jpg", 4000, i) for i in range(4)]
    print(f"inputs: {video.stat().st_size / 1e6:.1f} MB AVI of 8192x8192 frames; four JPEGs of "
          f"{photos[0].stat().st_size / 1e6:.0f} MB", flush=True)
    os.environ.update(FER_READ_ONLY="1", STREAMLIT_SERVER_MAX_UPLOAD_SIZE="100")
    srv = Server(work / "data", work / "server.log").start()
    peak, stop = [0.0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mb(srv.proc.pid))

    async def run() -> list[str]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
            warm = await student(browser, srv.url, visit, timeout)
            start.append(rss_mb(srv.proc.pid))
            acts = [lambda page, url: upload_video(page, url, video)] * 2 + \
                   [lambda page, url: upload_photos(page, url, photos)] * 2
            out = await asyncio.gather(*(student(browser, srv.url, act, timeout) for act in acts))
            await browser.close()
            return [warm, *out]

    start: list[float] = []
    try:
        fresh = rss_mb(srv.proc.pid)
        threading.Thread(target=watch, daemon=True).start()
        results = asyncio.run(run())
        closed = rss_mb(srv.proc.pid)
        time.sleep(settle)
        settled = rss_mb(srv.proc.pid)
        for r in results:
            print(" ", r)
        print(f"server RSS: fresh {fresh:.0f} MB, after one visit {start[0]:.0f} MB, peak {max(peak[0], closed):.0f} MB, "
              f"sessions closed {closed:.0f} MB, {settle:.0f} s later {settled:.0f} MB; still running: "
              f"{srv.proc.poll() is None}", flush=True)
    finally:
        stop.set()
        srv.stop()


def jobs_part() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-busy-"))
    env = {**os.environ, "FER_DATA_DIR": str(work / "data"), "PYTHONPATH": str(ROOT)}
    spin = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2 * (os.cpu_count() or 1))]
    os.environ["FER_DATA_DIR"] = env["FER_DATA_DIR"]
    from fer_core import jobs
    from fer_core.runs.trainconfig import TrainConfig

    try:
        time.sleep(2)
        with jobs.JobStore() as store:
            t0 = time.monotonic()
            job_id = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=2), store)
            first_beat = first_batch = None
            while True:
                jobs.schedule(store)
                job = store.get(job_id)
                now = time.monotonic() - t0
                if first_beat is None and job.beat:
                    first_beat = now
                if first_batch is None and job.steps:
                    first_batch = now
                if job.status in jobs.ENDED:
                    break
                time.sleep(0.25)
            print(f"{len(busy)} busy processes on {os.cpu_count()} cores: first heartbeat {first_beat:.1f} s after "
                  f"the submit, first batch {first_batch or float('nan'):.1f} s, job {job.status.value} after "
                  f"{time.monotonic() - t0:.1f} s" + (f" ({job.error})" if job.error else ""), flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("server", "jobs", "all"), default="all")
    ap.add_argument("--settle", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    if args.part in ("jobs", "all"):
        jobs_part()
    if args.part in ("server", "all"):
        server_part(args.settle, args.timeout)


if __name__ == "__main__":
    main()
