"""Prepare for class, measured: how long Evaluate (PrivateTest) and Explore's map take to open in
Chromium on a fresh server, with and without ``python -m fer_core warmup`` beforehand.

Two data folders on the same FER2013: one prepared (``warmup`` run first, timed too), one not.
For each, a fresh server; a new browser page opens Evaluate, then Explore, and the time until each
shows its result (the confusion matrix; the map's 10-NN accuracy) is printed.

    FER2013_DIR=/path/to/fer2013 .venv/bin/python benchmarks/bench_prepare.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_e2e import CHROMIUM, Server  # noqa: E402  (the tests' own server launcher)


def open_pages(server: Server, on_the_page: bool) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{server.url}/")  # the server's first page: its libraries load here, not in the timings
        page.get_by_text("Prepare for class").first.wait_for(timeout=600_000)
        if on_the_page:  # the lecturer's button: the server's own memory holds the data set and models too
            started = time.perf_counter()
            page.get_by_role("button", name="Prepare for class").click()
            page.get_by_text("Ready:").first.wait_for(timeout=600_000)
            out["prepare"] = time.perf_counter() - started
        for path, sign in (("evaluate", "Classification report"), ("explore", "10-NN accuracy on this map")):
            started = time.perf_counter()
            page.goto(f"{server.url}/{path}")
            page.get_by_text(sign).first.wait_for(timeout=600_000)
            out[path] = time.perf_counter() - started
        browser.close()
    return out


def main() -> None:
    data = os.environ.get("FER2013_DIR")
    if not data:
        sys.exit("set FER2013_DIR to the FER2013 folder")
    print(f"machine: {os.cpu_count()} cores; data: {data}")
    for prepared in ("command", "page", ""):
        folder = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
        env = {**os.environ, "FER_DATA_DIR": str(folder / "data")}
        # both start with the data set parsed and cached (as after any earlier use); only one has the warmup
        subprocess.run([sys.executable, "-m", "fer_core", "data", "summary", data], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        if prepared == "command":
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fer_core", "warmup", "--data", data], cwd=ROOT, env=env,
                           check=True, capture_output=True)
            print(f"warmup (the shipped models' evaluations on both test splits, three maps): "
                  f"{time.perf_counter() - started:.1f} s")
        os.environ["FER_DATA_DIR"] = str(folder / "data")
        server = Server(folder / "data", folder / "server.log", env={"FER2013_DIR": data}).start()
        try:
            times = open_pages(server, prepared == "page")
        finally:
            server.stop()
        label = {"command": "prepared by the command", "page": "prepared on the Home page", "": "not prepared"}[prepared]
        if "prepare" in times:
            print(f"Prepare for class on the Home page: {times['prepare']:.1f} s")
        print(f"{label}: Evaluate (PrivateTest, default model, flip) {times['evaluate']:.1f} s; "
              f"Explore map (fast model, PublicTest, 1,000 faces, PCA) {times['explore']:.1f} s")


if __name__ == "__main__":
    main()
