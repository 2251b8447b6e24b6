"""The quiz: rounds drawn by seed and answered by the model as evaluate does, the store's rules
(every bad answer refused and stored nowhere), thirty sessions at once, the CLI and the page."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.errors import ConfigError, QuizError
from fer_core.inference.engine import load_engine
from fer_core.inference.evaluate import evaluate
from fer_core.inference.forward import DEFAULT_TTA
from fer_core.inference.loader import resolve_model
from fer_core.quiz.rounds import draw_faces, make_round, results
from fer_core.quiz.store import QuizStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "quiz.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def fast():
    ref = resolve_model("fast")
    return ref, load_engine(ref)


@pytest.fixture(scope="module")
def demo_small():
    """The demo data set as ``demo:20`` loads it (on any server: the source a round records)."""
    from fer_core.data.loading import load_dataset

    return load_dataset("demo:20")


@pytest.fixture
def a_round(demo_small, fast):
    ref, model = fast
    return make_round(demo_small, "PrivateTest", 8, 5, model, ref, source="demo:20")


def test_faces_are_drawn_by_seed_balanced_or_as_the_split_is():
    labels = np.repeat(np.arange(7), [40, 3, 40, 80, 40, 30, 50])
    a, b = draw_faces(labels, 20, seed=1), draw_faces(labels, 20, seed=1)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 20  # the same seed, the same faces, none twice
    assert not np.array_equal(a, draw_faces(labels, 20, seed=2))
    per_class = np.bincount(labels[a], minlength=7)
    assert per_class.max() - per_class.min() <= 1  # balanced: 20 faces over 7 classes, 2 or 3 each
    few = np.bincount(labels[draw_faces(labels, 40, seed=1)], minlength=7)
    assert few[1] == 3 and few.sum() == 40  # a class that runs out is skipped, the others fill the round
    natural = draw_faces(labels, 200, seed=1, draw="natural")
    assert np.bincount(labels[natural], minlength=7)[3] > 40  # the split's own balance: happy dominates
    with pytest.raises(ConfigError, match="only 283 faces"):
        draw_faces(labels, 300, seed=1)


def test_the_models_score_on_a_round_is_evaluate_on_the_same_faces(a_round, demo_small, fast):
    ref, model = fast
    part = demo_small.subset("PrivateTest")
    faces = part.select(np.asarray(a_round.index))
    res = evaluate(model, faces, None, DEFAULT_TTA, classes=ref.classes)
    assert a_round.answers == res.y_pred.tolist() and a_round.labels == faces.labels.tolist()
    assert results(a_round, [])["model_accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert np.array_equal(a_round.faces(demo_small), part.images[a_round.index])
    other = demo_small.select(np.arange(len(demo_small))[::-1])  # the same faces in another order: other faces
    with pytest.raises(QuizError, match="not the one this round was drawn from"):
        a_round.faces(other)


def test_results_score_people_against_the_network(a_round):
    labels, n = a_round.labels, a_round.size
    given = [("a", k, labels[k]) for k in range(n)] + [("b", k, (labels[k] + 1) % 7) for k in range(n // 2)] \
        + [("b", n // 2, None)]  # b: half wrong, then a face left
    doc = results(a_round, given)
    assert doc["sessions"] == 2 and doc["answers"] == n + n // 2 + 1
    assert doc["class_accuracy"] == pytest.approx(n / (n + n // 2 + 1))
    assert sorted((s["answers"], s["right"]) for s in doc["scores"]) == [(n // 2 + 1, 0), (n, n)]
    assert np.asarray(doc["class_confusion"]).sum() == n + n // 2  # a face left is in no matrix
    assert np.trace(np.asarray(doc["class_confusion"])) == n
    face0 = doc["faces"][0]
    assert (face0["answers"], face0["right"], face0["agreement"]) == (2, 1, 0.5)
    # everyone wrong: the label is doubted only where the network is wrong too
    wrong = results(a_round, [("c", k, (labels[k] + 1) % 7) for k in range(n)])
    assert wrong["wrong_label"] == [k for k in range(n) if a_round.answers[k] != labels[k]]


def test_every_bad_answer_is_refused_with_a_message_and_stored_nowhere(a_round, data_dir, monkeypatch):
    monkeypatch.setenv("FER_QUIZ_SESSIONS", "2")
    monkeypatch.setenv("FER_QUIZ_MAX_ANSWERS", "5")
    monkeypatch.setenv("FER_QUIZ_OPEN_ROUNDS", "2")
    with QuizStore() as store:
        rnd = store.open_round(a_round, now=1000.0, hours=1)
        code = rnd.code
        assert len(code) == 4 and code.isalpha() and a_round.code == ""  # the cached round is not changed
        store.answer(code.lower(), "s1", 0, 3, now=1001.0)  # any case
        store.answer(code, "s2", 0, None, now=1001.0)
        bad = [
            (dict(code="ZZZZ", session="s1", face=1, choice=1), "No quiz round has the code 'ZZZZ'"),
            (dict(code=code, session="s1", face=0, choice=2), "answered face 1 of round .* already"),
            (dict(code=code, session="s1", face=a_round.size, choice=2), f"Face {a_round.size} is not in round"),
            (dict(code=code, session="s1", face=-1, choice=2), "Face -1 is not in round"),
            (dict(code=code, session="s1", face=1, choice=7), "Answer 7 is not one of the round's 7 classes"),
            (dict(code=code, session="a b", face=1, choice=1), "no valid id"),
            (dict(code=code, session="s3", face=1, choice=1), "as many players as this server takes"),
            (dict(code=code, session="s1", face=1, choice=1, now=1000.0 + 3601), "is closed"),  # expired
        ]
        for kwargs, message in bad:
            with pytest.raises(QuizError, match=message):
                store.answer(**{"now": 1002.0, **kwargs})
        for k in (1, 2, 3):
            store.answer(code, "s1", k, 1, now=1002.0)
        with pytest.raises(QuizError, match="full"):  # five answers in the store: the limit
            store.answer(code, "s2", 1, 1, now=1002.0)
        assert store.results(code)["answers"] == 5
        second = store.open_round(a_round, now=1003.0)
        with pytest.raises(QuizError, match="2 rounds are open"):
            store.open_round(a_round, now=1004.0)
        store.close(second.code, now=1005.0)
        with pytest.raises(QuizError, match="is closed"):
            store.answer(second.code, "s1", 0, 1, now=1006.0)
        assert store.answered(second.code, "s1") == {}
        assert store.answered(code, "s1") == {0: 3, 1: 1, 2: 1, 3: 1}
        assert store.delete(code) == 5 and store.rounds()[0].code == second.code


def test_nicknames_only_when_the_round_shows_them(a_round, data_dir):
    with QuizStore() as store:
        plain = store.open_round(a_round)
        store.answer(plain.code, "s1", 0, 1, nickname="Ada")
        assert "nickname" not in store.results(plain.code)["scores"][0]  # not kept where not allowed
        named = store.open_round(a_round, nicknames=True)
        with pytest.raises(QuizError, match="at most 20 characters"):
            store.answer(named.code, "s1", 0, 1, nickname="x" * 21)
        store.answer(named.code, "s1", 0, 1, nickname="Ada")
        assert store.results(named.code)["scores"][0]["nickname"] == "Ada"


def test_thirty_sessions_answering_at_once_lose_no_answer(a_round, data_dir):
    """Half the sessions share one store object (one server's connection), half have their own
    (another server, another process): all answer every face at the same moment."""
    with QuizStore() as store:
        code = store.open_round(a_round).code
    shared = QuizStore()
    start, errors = threading.Barrier(30), []

    def session(n: int) -> None:
        mine = shared if n % 2 else QuizStore()
        start.wait()
        try:
            for k in range(a_round.size):
                mine.answer(code, f"s{n}", k, (n + k) % 7)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    at_once = shared.results(code)
    assert at_once["sessions"] == 30 and at_once["answers"] == 30 * a_round.size
    # the same answers one at a time give the same board
    one_by_one = results(a_round, [(f"s{n}", k, (n + k) % 7) for n in range(30) for k in range(a_round.size)])
    for key in ("class_accuracy", "class_confusion", "faces", "scores"):
        assert at_once[key] == one_by_one[key], key
    shared.close_store()


def test_the_command_line_runs_a_round(data_dir, capsys):
    from fer_core.cli import main
    from fer_core.data.loading import load_dataset

    assert main(["quiz", "new", "--data", "demo:20", "--split", "PrivateTest", "--faces", "6", "--seed", "3",
                 "--model", "fast", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    part = load_dataset("demo:20").subset("PrivateTest")
    assert [f["label"] for f in doc["faces"]] == [part.class_names[part.labels[f["index"]]] for f in doc["faces"]]
    code = doc["code"]
    with QuizStore() as store:
        store.answer(code, "s1", 0, part.class_names.index(doc["faces"][0]["label"]))
        store.answer(code, "s1", 1, None)
    assert main(["quiz", "results", code, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["sessions"], res["answers"], res["class_accuracy"], res["open"]) == (1, 2, 0.5, True)
    ref = resolve_model("fast")
    ev = evaluate(load_engine(ref), part.select(np.asarray([f["index"] for f in doc["faces"]])), None, DEFAULT_TTA)
    assert res["model_accuracy"] == pytest.approx(ev.metrics["accuracy"])
    assert res["model_confusion"] == ev.metrics["confusion_matrix"]
    assert main(["quiz", "close", code]) == 0 and "closed" in capsys.readouterr().out
    with QuizStore() as store, pytest.raises(QuizError, match="closed"):
        store.answer(code, "s2", 0, 1)
    assert main(["quiz", "results", "QQQQ"]) == 2
    assert "No quiz round has the code 'QQQQ'" in capsys.readouterr().err
    assert main(["quiz", "new", "--faces", "0"]) == 2  # refused before any data set or model loads
    assert "faces: 0 is not between 1 and 100" in capsys.readouterr().err


def _pick(at: AppTest, choice: int) -> AppTest:
    return at.button(key=f"quiz_pick_{choice}").click().run()


def test_the_page_plays_a_round_and_scores_it(demo_app, monkeypatch):
    import time

    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.radio(key="quiz_mode").options == ["Play on your own", "Join a class round", "Class board (lecturer)"]
    clock[0] += 5  # regression: the seed's default follows the clock, and the run after it dropped the typed seed
    at.number_input[0].set_value(5)
    at.number_input[1].set_value(11)
    at.button[0].click().run()
    rnd = at.session_state["quiz_play"]["round"]
    assert rnd.size == 5 and rnd.source == "demo" and rnd.seed == 11
    for k in range(5):
        assert f"Face {k + 1} of 5" in at.get("progress")[0].proto.text
        _pick(at, rnd.labels[k] if k < 3 else (rnd.labels[k] + 1) % 7)
    assert not at.exception
    assert [s.value for s in at.subheader][0] == "Your score: 3 of 5"
    assert at.metric[0].value == "60%"
    assert at.metric[1].value == f"{np.mean([a == t for a, t in zip(rnd.answers, rnd.labels)]):.0%}"


def test_a_student_joins_on_a_read_only_server_which_writes_only_answers(a_round, demo_app, monkeypatch):
    monkeypatch.setenv("FER_READ_ONLY", "1")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="quiz_mode").set_value("Join a class round").run()
    assert at.radio(key="quiz_mode").options == ["Play on your own", "Join a class round"]  # no board here
    at.text_input(key="quiz_code").set_value("ABCD").run()
    assert "No quiz round is open on this server" in at.error[0].value
    assert not demo_app.exists()  # the read-only server made no quiz store, nor the data folder
    monkeypatch.delenv("FER_READ_ONLY")
    with QuizStore() as store:  # the lecturer's side opens a round
        code = store.open_round(a_round).code
    others = lambda: sorted(p.name for p in demo_app.iterdir() if not p.name.startswith("quiz.sqlite3"))  # noqa: E731
    before = others()
    monkeypatch.setenv("FER_READ_ONLY", "1")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="quiz_mode").set_value("Join a class round").run()
    at.text_input(key="quiz_code").set_value(code.lower()).run()
    at.button(key="quiz_join").click().run()
    player = at.query_params["player"]  # the anonymous id, kept in the address for a reload
    _pick(at, a_round.labels[0])
    # the phone dropped the tab: the reloaded page (same address) carries on at the next face
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["player"], at.query_params["code"] = player, code
    at.run()
    at.button(key="quiz_join").click().run()
    assert "Face 2 of" in at.get("progress")[0].proto.text
    for k in range(1, a_round.size):
        _pick(at, a_round.labels[k])
    assert not at.exception and not at.error
    assert any("Your answers are in round" in s.value for s in at.success)
    assert others() == before  # answers only, into the quiz store (its file and SQLite's side files)
    with QuizStore() as store:
        doc = store.results(code)
    assert (doc["sessions"], doc["answers"], doc["class_accuracy"]) == (1, a_round.size, 1.0)


def test_a_round_closed_while_a_student_plays_ends_with_what_was_answered(a_round, demo_app, monkeypatch):
    with QuizStore() as store:
        code = store.open_round(a_round).code
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["code"] = code
    at.run()
    at.button(key="quiz_join").click().run()
    _pick(at, a_round.labels[0])
    with QuizStore() as store:
        store.close(code)  # the lecturer closes it
    _pick(at, a_round.labels[1])
    assert not at.exception
    assert any(f"Round {code} is closed" in w.value for w in at.warning)  # said, and the results of what was in
    assert at.subheader[0].value == "Your score: 1 of 1"


def test_a_training_round_shows_how_the_run_learned_each_face(trained_run):
    """The training dynamics' region of each face the run followed (only Training faces have one)."""
    from fer_core.data.loading import load_dataset
    from fer_core.training.dynamics import read_dynamics

    ref = resolve_model(str(trained_run))
    ds, model = load_dataset("demo"), load_engine(ref)
    rnd = make_round(ds, "Training", 40, 2, model, ref)
    where = {f["index"]: f["region"] for f in read_dynamics(trained_run).cartography()["faces"]}
    assert rnd.regions and rnd.regions == {k: where[i] for k, i in enumerate(rnd.index) if i in where}
    doc = results(rnd, [("s", k, 0) for k in range(rnd.size)])
    assert {f["face"]: f["region"] for f in doc["faces"] if f["region"]} == rnd.regions
    assert make_round(ds, "PrivateTest", 5, 2, model, ref).regions == {}  # test faces were never followed


def test_a_face_whose_time_runs_out_counts_as_left(demo_app):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.number_input[0].set_value(3)
    at.number_input[2].set_value(10)  # seconds per face
    at.button[0].click().run()
    play = at.session_state["quiz_play"]
    assert play["round"].timer == 10 and " s left" in at.get("progress")[0].proto.text
    play["shown"] -= 11  # ten seconds and more have passed on the first face
    at.run()
    assert play["picks"] == {0: None} and "Face 2 of 3" in at.get("progress")[0].proto.text
    _pick(at, 0)
    _pick(at, 0)
    assert at.subheader[0].value.endswith("of 3") and not at.exception
