"""The class quiz in Chromium: a round opened on the lecturer's full server, three students answering
it on a read-only server over the same data folder, the board checked against what they answered."""

from __future__ import annotations

import re
import time

import pytest

from tests.test_e2e import FITS, Journey, Server, browser  # noqa: F401  (browser: the module's Chromium)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The lecturer's full server and the students' read-only one, over one data folder, started together."""
    folder = tmp_path_factory.mktemp("quiz")
    full = Server(folder / "data", folder / "full.log")
    students = Server(folder / "data", folder / "students.log", env={"FER_READ_ONLY": "1"})
    try:
        yield full.start(), students.start()
    finally:
        students.stop()
        full.stop()


def _answer(j: Journey, size: int, picks: list[int], keyboard: bool) -> None:
    """Answer the round's faces in order: ``picks[k]`` for face k (by click, or by the key 1-7)."""
    for k, choice in enumerate(picks):
        j.see(f"Face {k + 1} of {size}")
        if keyboard:
            j.page.keyboard.press(str(choice + 1))  # the focus is on the page (the clicked Join button is gone)
        else:
            j.page.locator(f".st-key-quiz_pick_{choice} button").click()
    # the last answer is in once the page has moved on (a tab closed at the click could lose it)
    j.see("Your answers are in round" if len(picks) == size else f"Face {len(picks) + 1} of {size}")


def _fits(j: Journey, width: int) -> None:
    """Nothing sticks out of the main area at this width (a phone, a projector)."""
    fit = j.page.evaluate(FITS)
    assert fit["scroll"] <= 0 and not fit["overflow"], (width, fit)


def _shows(j: Journey, *texts: str, timeout: float = 90) -> str:
    """Wait until the main area shows every one of ``texts`` (whitespace as one space); return it."""
    deadline = time.time() + timeout
    while True:
        shown = " ".join(j.page.get_by_test_id("stMain").inner_text().split())
        if all(t in shown for t in texts):
            return shown
        assert time.time() < deadline, f"never showed {texts}:\n{shown[-2000:]}"
        j.page.wait_for_timeout(500)


def test_a_class_answers_a_round_and_the_board_follows(browser, servers, monkeypatch):  # noqa: F811
    from fer_core.quiz.store import QuizStore

    full, students = servers
    size = 4
    lecturer = Journey(browser.new_page(viewport={"width": 1024, "height": 768}), full.url)
    lecturer.open("quiz")
    lecturer.page.get_by_text("Class board (lecturer)").click()
    lecturer.see("Open a round to the class")
    field = lecturer.page.get_by_label("Faces", exact=True)
    deadline = time.time() + 120
    while True:  # the solo form's own "Faces" stays on screen until the rerun that replaced it has ended
        lecturer.idle()
        if field.count() == 1:
            break
        assert time.time() < deadline, f"{field.count()} 'Faces' fields after switching to the board"
    field.fill(str(size))
    field.press("Enter")
    lecturer.idle()
    lecturer.page.get_by_role("button", name="Open the round").click()
    shown = lecturer.until("Code:", "(open)")
    code = re.search(r"Code: ([A-Z]{4})", shown).group(1)
    lecturer.shot("quiz-board-open")

    monkeypatch.setenv("FER_DATA_DIR", str(full.data_dir))
    with QuizStore() as store:
        labels = store.get(code).labels
    # three students, each in a browser of their own (two phones, one laptop): all faces, all faces, half
    plans = [([3] * size, False, 390), ([k % 7 for k in labels[:size]], True, 1024), ([0, 6], False, 390)]
    for n, (picks, keyboard, width) in enumerate(plans):
        context = browser.new_context(viewport={"width": width, "height": 844})
        j = Journey(context.new_page(), students.url)
        j.open("quiz")
        j.page.get_by_text("Join a class round").click()
        box = j.page.get_by_label("Round code (from your lecturer)")
        box.fill(code.lower())  # typed in any case
        box.press("Enter")
        j.page.get_by_role("button", name="Join").click()
        j.see(f"Face 1 of {size}")
        j.shot(f"quiz-student-{n + 1}-face")
        _fits(j, width)
        _answer(j, size, picks, keyboard)
        j.shot(f"quiz-student-{n + 1}")
        _fits(j, width)
        context.close()

    with QuizStore() as store:
        doc = store.results(code)
        stored = sorted(sorted(store.answered(code, s["session"]).items()) for s in doc["scores"])
    given = [(k, c) for picks, _, _ in plans for k, c in enumerate(picks)]
    assert stored == sorted(list(enumerate(picks)) for picks, _, _ in plans), stored  # every answer, as given
    assert doc["sessions"] == 3 and doc["answers"] == len(given) == 10
    right = sum(c == labels[k] for k, c in given)
    assert doc["class_accuracy"] == pytest.approx(right / len(given))
    assert sorted(s["answers"] for s in doc["scores"]) == [2, 4, 4]
    # the lecturer's board shows the same, live (it refreshes by itself)
    board = _shows(lecturer, "Students 3", f"Answers {len(given)} of 12", f"The class {right / len(given):.0%}")
    assert f"The network ({doc['model']}) {doc['model_accuracy']:.0%}" in board
    lecturer.shot("quiz-board-answered")
    _fits(lecturer, 1024)
    lecturer.page.get_by_role("button", name=f"Close round {code}").click()
    _shows(lecturer, f"Code: {code} (closed)")
    with QuizStore() as store:
        assert not store.results(code)["open"]
    lecturer.page.close()
