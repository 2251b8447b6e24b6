"""The class quiz under load: answers per second the quiz store takes, and time from answer to board.

1. Store: a round of ``--faces`` faces; ``--sessions`` threads answer every face at once, first all
   through one shared store object (one server's connection), then each with its own connection
   (two servers, or processes, writing the one file). Prints answers/s for both and what the
   board's query (``results``) costs with all those answers in.
2. Browser (skipped with ``--no-browser``): the lecturer's full server shows the board of a round,
   a student answers on the read-only server over the same data folder, and the time from the
   student's click to the board's answer count going up is measured ``--answers`` times.

    .venv/bin/python benchmarks/bench_quiz.py [--sessions 30] [--faces 20] [--answers 8] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_e2e import CHROMIUM, Server  # noqa: E402  (the tests' own server launcher)


def make_round(faces: int):
    from fer_core.data.loading import load_dataset
    from fer_core.inference.engine import load_engine
    from fer_core.inference.loader import resolve_model
    from fer_core.quiz.rounds import make_round as draw

    ref = resolve_model("fast")
    return draw(load_dataset("demo"), "PrivateTest", faces, 1, load_engine(ref), ref, source="demo")


def store_rate(rnd, sessions: int, shared: bool) -> tuple[float, float]:
    """(answers per second, seconds for the board's query) with ``sessions`` threads answering every face."""
    from fer_core.quiz.store import QuizStore

    with QuizStore() as store:
        code = store.open_round(rnd).code
    one = QuizStore()
    start = threading.Barrier(sessions + 1)
    errors = []

    def session(n: int) -> None:
        mine = one if shared else QuizStore()
        start.wait()
        try:
            for k in range(rnd.size):
                mine.answer(code, f"s{n}", k, (n + k) % 7)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    t0 = time.perf_counter()
    doc = one.results(code)
    query = time.perf_counter() - t0
    assert not errors and doc["answers"] == sessions * rnd.size, (errors[:3], doc["answers"])
    with QuizStore() as store:
        store.close(code)
    return sessions * rnd.size / took, query


def board_latency(answers: int, faces: int) -> list[float]:
    """Seconds from a student's click to the lecturer's board counting it, ``answers`` times."""
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench-quiz-"))
    full = Server(folder / "data", folder / "full.log")
    students = Server(folder / "data", folder / "students.log", env={"FER_READ_ONLY": "1"})
    os.environ["FER_DATA_DIR"] = str(folder / "data")
    from fer_core.quiz.store import QuizStore

    with QuizStore() as store:
        code = store.open_round(make_round(faces)).code
    full.start(), students.start()
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            board = browser.new_page(viewport={"width": 1280, "height": 900})
            board.goto(f"{full.url}/quiz")
            board.get_by_text("Class board (lecturer)").click()
            shown = lambda: " ".join(board.get_by_test_id("stMain").inner_text().split())  # noqa: E731
            while f"Code: {code}" not in shown():
                board.wait_for_timeout(200)
            student = browser.new_page(viewport={"width": 390, "height": 844})
            student.goto(f"{students.url}/quiz?code={code}")
            student.get_by_role("button", name="Join").click()
            for k in range(min(answers, faces)):
                student.get_by_text(f"Face {k + 1} of {faces}").first.wait_for()
                clicked = time.perf_counter()
                student.locator(".st-key-quiz_pick_3 button").click()
                while not re.search(rf"Answers {k + 1} of", shown()):
                    board.wait_for_timeout(50)
                out.append(time.perf_counter() - clicked)
            browser.close()
    finally:
        students.stop(), full.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--faces", type=int, default=20)
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    os.environ["FER_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-quiz-store-")
    rnd = make_round(args.faces)
    print(f"machine: {os.cpu_count()} cores; {args.sessions} sessions x {args.faces} faces, all at once")
    for shared in (True, False):
        rate, query = store_rate(rnd, args.sessions, shared)
        how = "one shared connection (one server)" if shared else "a connection each (several servers)"
        print(f"store, {how}: {rate:,.0f} answers/s; the board's query over {args.sessions * args.faces} "
              f"answers: {query * 1000:.1f} ms")
    if not args.no_browser:
        lat = board_latency(args.answers, args.faces)
        print(f"answer to board (student's click on the read-only server to the lecturer's board counting it, "
              f"{len(lat)} answers): median {statistics.median(lat):.2f} s, max {max(lat):.2f} s")


if __name__ == "__main__":
    main()
