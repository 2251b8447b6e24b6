"""Benchmark the app as a user feels it: Streamlit served on loopback, driven by Playwright in
Debian's Chromium (``/usr/bin/chromium``).

Prints, in seconds:
1. the Home page's first render after the server started (a fresh server: nothing imported or cached);
2. a visit to each page, first (cold: data set loaded, models built, evaluation computed) and
   again (warm);
3. interactions once the data set is cached, from the click until the page has settled (the
   script finished and what it changes is shown): Dataset (class filter, split of the mean
   faces, page of the grid), Runs (the runs compared, the study table's rows), Evaluate (the
   gallery's view and outcome filters).

A tiny run is trained on the demo set first (about 10 s) so that the Runs and Evaluate pages
have something to show. Usage: python benchmarks/bench_pages.py [--data demo|PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FER_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, env_extra: dict) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = {**os.environ, "FER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), **env_extra}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url, t0
        except OSError:
            time.sleep(0.05)


def settle(page, text: str | None = None, timeout: float = 300) -> None:
    """Wait until ``text`` shows (when given) and the script has stopped running: the "Running"
    widget, once it has appeared (a rerun can start a moment after the click), is gone."""
    deadline = time.time() + timeout
    if text:
        page.get_by_text(text).first.wait_for(timeout=timeout * 1000)
    running = page.get_by_test_id("stStatusWidget")
    appear = time.time() + 0.3
    while not running.count() and time.time() < appear:
        page.wait_for_timeout(10)
    while running.count() and time.time() < deadline:
        page.wait_for_timeout(10)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox labelled ``label`` (type it, then Enter)."""
    box = page.get_by_test_id("stSelectbox").filter(
        has=page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)).filter(visible=True).first
    box.scroll_into_view_if_needed()
    box.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).first.wait_for()
    page.keyboard.press("Enter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo", help="the active data set (default: the demo set)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each interaction (median printed)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {"FER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "fer_core", "train", "--data", "demo:60", "--arch", "tiny", "--epochs",
                        "2", "--out", str(data_dir / "runs" / "bench-run")], cwd=ROOT, env={**os.environ, **env}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        extra = {} if args.data == "demo" else {"FER2013_DIR": args.data}
        if args.data != "demo":
            (data_dir / "settings.json").write_text(f'{{"data_source": "{args.data}"}}')
        proc, url, started = start_server(data_dir, extra)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=["--no-sandbox", "--disable-dev-shm-usage"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(300_000)
                healthy = time.perf_counter() - started
                page.goto(url)
                settle(page, "FER Studio")
                print(f"Home, first render after the server started: {time.perf_counter() - started:.2f} s "
                      f"(the server answered after {healthy:.2f} s)", flush=True)
                print(f"\nPage visits (s), {os.cpu_count()} CPU cores, data: {args.data}")
                print(f"  {'page':<10} {'first':>7} {'again':>7}")
                for name, text in (("", "FER Studio"), ("dataset", "images"), ("train", "Submit training job"),
                                   ("runs", "All runs"), ("evaluate", "Confusion matrix"), ("predict", "Photos")):
                    first = timed(lambda: (page.goto(f"{url}/{name}"), settle(page, text)))
                    again = timed(lambda: (page.goto(f"{url}/{name}"), settle(page, text)))
                    print(f"  {name or 'home':<10} {first:7.2f} {again:7.2f}", flush=True)

                print(f"\nInteractions once cached (median of {args.repeat}, s):")
                page.goto(f"{url}/dataset")
                settle(page, "images")
                page.get_by_role("tab", name="Samples").click()
                settle(page, "Click a face's label")
                rows = []
                classes = ["surprise", "happy", "sad", "angry"]
                rows.append(("Dataset: class filter", [timed(lambda c=c: (pick(page, "Class", c), settle(page)))
                                                       for c in classes[:args.repeat]]))
                rows.append(("Dataset: page of the grid", [timed(lambda k=k: (
                    page.get_by_label("Page (of", exact=False).first.fill(str(k)),
                    page.keyboard.press("Enter"), settle(page))) for k in range(2, 2 + args.repeat)]))
                page.get_by_role("tab", name="Mean faces & histogram").click()
                splits = ["Training", "PublicTest", "PrivateTest", "all"]
                rows.append(("Dataset: mean faces' split", [timed(lambda s=s: (pick(page, "Split", s), settle(page)))
                                                            for s in splits[:args.repeat]]))
                page.goto(f"{url}/runs")
                settle(page, "All runs")
                page.get_by_role("tab", name="Study table").click()
                rows.append(("Runs: study table rows", [timed(lambda k=k: (
                    page.get_by_text("all runs" if k % 2 == 0 else "chosen runs", exact=True).click(), settle(page)))
                    for k in range(args.repeat)]))
                page.goto(f"{url}/evaluate")
                settle(page, "Confusion matrix")
                views = ["most confident mistakes", "least confident correct", "all"]
                rows.append(("Evaluate: gallery view", [timed(lambda v=v: (pick(page, "View", v), settle(page)))
                                                        for v in views[:args.repeat]]))
                pick(page, "View", "all")  # the outcome filter applies to this view
                settle(page)
                rows.append(("Evaluate: outcome filter", [timed(lambda o=o: (
                    page.get_by_text(o, exact=True).first.click(), settle(page)))
                    for o in ["correct", "wrong", "all"][:args.repeat]]))
                for name, times in rows:
                    print(f"  {name:<28} {statistics.median(times):6.2f}   (all: {', '.join(f'{t:.2f}' for t in times)})")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
