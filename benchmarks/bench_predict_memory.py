"""Benchmark what large photos cost: the CLI's time and peak memory, and the server's memory over
many uploads on the Predict page.

1. CLI: ``python -m fer_core predict PHOTO --json`` on a 640x480 JPEG, a 7600x7600 JPEG and a
   7600x7600 16-bit PNG (skimage's public-domain astronaut, scaled up): wall time and the
   process's peak resident memory, each against the small photo.
2. Server: a real ``streamlit run app.py`` on loopback; Chromium uploads ``--uploads`` different
   7600x7600 JPEGs one after the other on the Predict page and waits for each result; the
   server's resident memory is read from /proc after each.

Usage: python benchmarks/bench_predict_memory.py [--uploads 20] [--skip-server]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def astronaut(side: int | tuple[int, int], mark: int = 0) -> Image.Image:
    from skimage import data

    size = (side, side) if isinstance(side, int) else side
    im = Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BILINEAR)
    if mark:  # a different file each time: no cache can answer it
        im.putpixel((mark % size[0], 0), (mark % 256, 0, 0))
    return im


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def run_cli(path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one predict command in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fer_core", "predict", str(path), "--json", "--tta", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed on {path}")
    return seconds, usage.ru_maxrss / 1024


def bench_cli(folder: Path) -> None:
    photos = {"640x480 JPEG": ("small.jpg", encode(astronaut((640, 480)), "JPEG")),
              "7600x7600 JPEG": ("big.jpg", encode(astronaut(7600), "JPEG"))}
    gray16 = (np.asarray(astronaut(7600).convert("L"), np.uint16) * 257)
    photos["7600x7600 16-bit PNG"] = ("big16.png", encode(Image.fromarray(gray16), "PNG"))
    print("CLI: python -m fer_core predict PHOTO --json --tta none (fresh process each, best of 2)")
    base = None
    for label, (name, data) in photos.items():
        path = folder / name
        path.write_bytes(data)
        seconds, peak = min(run_cli(path) for _ in range(2))
        base = base or (seconds, peak)
        print(f"  {label:<22} {len(data) / 1e6:7.1f} MB file  {seconds:6.2f} s  peak {peak:7.0f} MB"
              f"  (+{seconds - base[0]:.2f} s, +{peak - base[1]:.0f} MB over the small photo)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_server(folder: Path, uploads: int) -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "FER2013_DIR"}
    env.update(FER_DATA_DIR=str(folder / "data"), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                               str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        files = []
        for i in range(uploads):
            path = folder / f"upload-{i:02d}.jpg"
            path.write_bytes(encode(astronaut(7600, mark=i + 1), "JPEG"))
            files.append(path)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"{url}/predict")
            page.get_by_text("No photo?").first.wait_for()
            start = rss_mb(server.pid)
            print(f"Server: {uploads} uploads of a 7600x7600 JPEG on the Predict page "
                  f"(server RSS after the page's first load: {start:.0f} MB)")
            peak, times = start, []
            for i, path in enumerate(files, 1):
                t0 = time.perf_counter()
                page.locator("input[type=file]").set_input_files(str(path))
                # its result: a heading with its name above the drawn photo, then an idle script
                page.get_by_role("heading", name=f"upload-{i - 1:02d}.jpg").first.wait_for()
                page.wait_for_timeout(300)
                while page.get_by_test_id("stStatusWidget").count():
                    page.wait_for_timeout(200)
                times.append(time.perf_counter() - t0)
                now = rss_mb(server.pid)
                peak = max(peak, now)
                if i in (1, 5, 10, 15, 20) or i == uploads:
                    print(f"  after upload {i:2d}: server RSS {now:6.0f} MB  (result shown in {times[-1]:.1f} s)")
            browser.close()
        print(f"  peak server RSS {peak:.0f} MB over {uploads} uploads; median time to a result "
              f"{sorted(times)[len(times) // 2]:.1f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        bench_cli(Path(tmp))
        if not args.skip_server:
            bench_server(Path(tmp), args.uploads)


if __name__ == "__main__":
    main()
