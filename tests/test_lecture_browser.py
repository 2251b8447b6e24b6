"""The lecturer's demo in Chromium: Runs follows a job by itself; presentation mode sticks across
pages and enlarges what the back row reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.test_e2e import ROOT, Journey, Server, browser  # noqa: F401  (browser: the module's Chromium)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lecture")
    srv = Server(folder / "data", folder / "server.log").start()
    yield srv
    srv.stop()


def _text(j: Journey) -> str:
    return " ".join(j.page.get_by_test_id("stMain").inner_text().split())


def _until(j: Journey, *texts: str, timeout: float = 240) -> str:
    deadline = time.time() + timeout
    while True:
        shown = _text(j)
        if all(t in shown for t in texts):
            return shown
        assert time.time() < deadline, f"never showed {texts}:\n{shown[-1500:]}"
        j.page.wait_for_timeout(500)


def test_runs_follows_a_job_from_submission_to_its_end_without_a_reload(browser, server):  # noqa: F811
    j = Journey(browser.new_page(viewport={"width": 1280, "height": 900}), server.url)
    j.open("runs")
    _until(j, "No runs yet", "How the shipped model learned")
    env = {**{k: v for k, v in os.environ.items() if k != "FER2013_DIR"}, "FER_DATA_DIR": str(server.data_dir)}
    subprocess.run([sys.executable, "-m", "fer_core", "jobs", "submit", "--arch", "tiny", "--data", "demo:30",
                    "--epochs", "1", "--json"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    _until(j, "All runs (1)")  # the page was not reloaded: it noticed the job
    _until(j, "1 succeeded", timeout=300)
    j.shot("runs-followed-a-job")
    j.page.close()


SIZES = """() => {
  const size = sel => {
    const all = [...document.querySelectorAll(`[data-testid="stMain"] ${sel}`)].filter(e => e.offsetParent !== null);
    return all.length ? parseFloat(getComputedStyle(all[0]).fontSize) : null;
  };
  return {metric: size('[data-testid="stMetricValue"] div') || size('[data-testid="stMetricValue"]'),
          caption: size('[data-testid="stCaptionContainer"]'), text: size('[data-testid="stMarkdownContainer"] p'),
          title: size('h1')};
}"""
#: Each page, and what it shows once drawn.
PAGES = {"evaluate": "Confusion matrix", "dataset": "Class distribution", "runs": "How the shipped model learned",
         "quiz": "Can you beat the network?"}


def _sizes(j: Journey, path: str) -> dict:
    _until(j, PAGES[path])
    j.idle()
    return j.page.evaluate(SIZES)


def _grew(before: dict, j: Journey, path: str, timeout: float = 30) -> None:
    """Wait until every text size measured on the page without presentation mode is larger here."""
    deadline = time.time() + timeout
    while True:
        after = _sizes(j, path)
        measured = {k: (before[k], after[k]) for k in before if before[k] is not None}
        assert len(measured) >= 2, (path, before)
        if all(b > a for a, b in measured.values()):
            return
        assert time.time() < deadline, (path, j.page.url, measured)
        j.page.wait_for_timeout(500)


def test_presentation_mode_sticks_across_pages_and_enlarges_what_the_back_row_reads(browser, server):  # noqa: F811
    plain = Journey(browser.new_page(viewport={"width": 1280, "height": 900}), server.url)
    normal = {}
    for path in PAGES:
        plain.open(path)
        normal[path] = _sizes(plain, path)
    plain.page.close()
    # one switch in the sidebar, then every page reached through the app's navigation (no reload)
    j = Journey(browser.new_page(viewport={"width": 1280, "height": 900}), server.url)
    j.open("evaluate")
    _sizes(j, "evaluate")
    j.page.get_by_text("Presentation mode (back row)").click()
    j.page.wait_for_timeout(1000)
    _grew(normal["evaluate"], j, "evaluate")
    assert "present=1" in j.page.url  # a reload of the projector's tab stays in it
    for path in ("dataset", "runs", "quiz"):
        j.page.get_by_test_id("stSidebarNav").get_by_role("link", name=path.capitalize()).click()
        _grew(normal[path], j, path)
    j.shot("presentation-mode")
    j.page.close()
    # the projector's tab opened on a deep link in presentation mode
    deep = Journey(browser.new_page(viewport={"width": 1024, "height": 768}), server.url)
    deep.open("dataset?present=1")
    _grew(normal["dataset"], deep, "dataset")
    deep.page.close()


WHOLE = """() => {
  const cut = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stMetricValue"] *')]
    .filter(e => e.children.length === 0 && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);
  const broken = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
    .map(e => getComputedStyle(e)).filter(s => s.wordBreak !== 'normal' || s.overflowWrap !== 'normal').length;
  const rows = [...document.querySelectorAll('[class*="st-key-grid_row"] [data-testid="stHorizontalBlock"]')].map(
    b => [...b.querySelectorAll(':scope > [data-testid="stColumn"]')].map(c => Math.round(c.getBoundingClientRect().width)));
  return {cut, broken, rows};
}"""


def test_evaluate_reads_whole_on_a_phone_and_in_even_rows_on_a_projector(browser, server):  # noqa: F811
    """Regression: at 390 px the four headline numbers read "72…", "0.…"; captions broke inside
    words ("happ y"); at 1024 px a gallery row of 8 wrapped into 5 small faces and 3 large."""
    for width in (390, 1024):
        j = Journey(browser.new_page(viewport={"width": width, "height": 900}), server.url)
        j.open("evaluate")
        _until(j, "Per-image predictions", "predicted")
        j.idle()
        deadline = time.time() + 30
        while True:  # the page settles (elements of an earlier run linger a moment): then it must hold
            found = j.page.evaluate(WHOLE)
            even = all(max(row) - min(row) <= 2 for row in found["rows"])
            if (not found["cut"] and not found["broken"] and even) or time.time() > deadline:
                break
            j.page.wait_for_timeout(500)
        assert not found["cut"], (width, found["cut"])  # every headline number whole
        assert found["broken"] == 0, width  # captions break between words only
        assert found["rows"], width
        for row in found["rows"]:  # faces in even rows: every column of a row as wide as the others
            assert max(row) - min(row) <= 2, (width, row)
        j.shot(f"evaluate-{width}")
        j.page.close()
