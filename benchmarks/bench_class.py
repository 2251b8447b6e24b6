"""A class at once: N Chromium sessions against one FER Studio server on loopback.

Each session opens Predict, uploads two photos (the astronaut at two sizes, one face each), waits
for both results, then opens Evaluate and waits for the confusion matrix. Prints errors, p50/p95
time to results, whether every session's labels and boxes equal a single user's, and the server's
RSS at start, at its peak and ``--settle`` seconds after the sessions close.

    .venv/bin/python benchmarks/bench_class.py [--sessions 20] [--settle 180] [--read-only]

Needs Debian's Chromium (/usr/bin/chromium) and Playwright (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_e2e import CHROMIUM, Server  # noqa: E402  (the tests' own server launcher)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB)."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data as skimage_data

    face = Image.fromarray(skimage_data.astronaut())
    out = []
    for i, side in enumerate((360, 640)):
        canvas = Image.new("RGB", (side + 80, side + 20), (90, 100, 110))
        canvas.paste(face.resize((side, side)), (40, 10))
        out.append(folder / f"class-photo-{i}.jpg")
        canvas.save(out[-1], quality=92)
    return out


async def faces_shown(page) -> list[str]:
    """The face cards' headings ("Face 1: happy (97%) · box [...]"), in page order."""
    return sorted(t.strip() for t in await page.get_by_text("Face 1:").all_inner_texts())


async def session(browser, url: str, files: list[Path], timeout: float) -> dict:
    """One student: Predict with two photos, then Evaluate; times and what was shown."""
    started = time.monotonic()
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    page.set_default_timeout(timeout * 1000)
    try:
        await page.goto(f"{url}/predict", wait_until="domcontentloaded")
        await page.get_by_test_id("stApp").wait_for()
        await page.locator('input[type="file"]').first.set_input_files([str(f) for f in files])
        deadline = time.monotonic() + timeout
        while await page.get_by_text("what the model saw").count() < len(files):
            if await page.get_by_test_id("stException").count():
                raise AssertionError(await page.get_by_test_id("stException").first.inner_text())
            if time.monotonic() > deadline:
                raise TimeoutError("no results")
            await page.wait_for_timeout(250)
        results = time.monotonic() - started
        shown = await faces_shown(page)
        await page.goto(f"{url}/evaluate", wait_until="domcontentloaded")
        await page.get_by_text("Confusion matrix").first.wait_for()
        errors = await page.get_by_test_id("stException").count()
        return {"ok": errors == 0, "results_s": results, "total_s": time.monotonic() - started, "faces": shown,
                "error": None if not errors else "exception box"}
    except Exception as exc:  # a session's failure is a figure, not a crash of the benchmark
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        await ctx.close()


BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage"]


async def run_class(url: str, files: list[Path], sessions: int, timeout: float, after_one) -> tuple[dict, list[dict], float]:
    """One user alone (the reference), then ``sessions`` at once: each a browser context (its own
    cookies and websocket, as a student's laptop) of one Chromium, driven concurrently."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        alone = await session(browser, url, files, timeout)
        after_one()  # the server with its models loaded: the start of the class
        t0 = time.monotonic()
        many = await asyncio.gather(*(session(browser, url, files, timeout) for _ in range(sessions))) \
            if alone["ok"] else []
        wall = time.monotonic() - t0
        await browser.close()
    return alone, list(many), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--settle", type=float, default=180, help="seconds to wait after the sessions close")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one session may take")
    ap.add_argument("--read-only", action="store_true", help="serve with FER_READ_ONLY=1")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-class-"))
    files = photos(work)
    if args.read_only:
        os.environ["FER_READ_ONLY"] = "1"
    srv = Server(work / "data", work / "server.log").start()
    peak, stop = [0.0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mb(srv.proc.pid))

    try:
        fresh, start = rss_mb(srv.proc.pid), []
        threading.Thread(target=watch, daemon=True).start()
        print(f"server RSS fresh {fresh:.0f} MB; one user, then {args.sessions} sessions at once on "
              f"{os.cpu_count()} cores…", flush=True)
        warm, out, wall = asyncio.run(run_class(srv.url, files, args.sessions, args.timeout,
                                                lambda: start.append(rss_mb(srv.proc.pid))))
        start_rss = start[0] if start else fresh
        if not warm["ok"]:
            print("the single-user run failed:", warm["error"])
            return 1
        print(f"single user: results in {warm['results_s']:.1f} s; server RSS then {start_rss:.0f} MB")
        closed_rss = rss_mb(srv.proc.pid)
        time.sleep(args.settle)
        settled = rss_mb(srv.proc.pid)
        stop.set()
        ok = [r for r in out if r["ok"]]
        same = sum(r["faces"] == warm["faces"] for r in ok)
        times = sorted(r["results_s"] for r in ok)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] if times else float("nan")
        print(f"sessions {args.sessions}: errors {len(out) - len(ok)}, identical to one user {same}/{len(ok)}, "
              f"all done in {wall:.0f} s")
        print(f"time to results: p50 {statistics.median(times) if times else float('nan'):.1f} s, p95 {p95:.1f} s")
        print(f"server RSS: start {start_rss:.0f} MB, peak {max(peak[0], closed_rss):.0f} MB, when the sessions "
              f"closed {closed_rss:.0f} MB, {args.settle:.0f} s later {settled:.0f} MB "
              f"({settled - start_rss:+.0f} MB)")
        for r in out:
            if not r["ok"]:
                print("  error:", r["error"])
        alive = srv.proc.poll() is None
        print("server still running:", alive)
        return 0 if alive and len(ok) == len(out) and same == len(ok) else 1
    finally:
        stop.set()
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
