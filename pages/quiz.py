"""Quiz page: can you beat the network? The same faces for people and the model, scored side by side."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import time

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from fer_core.config import SPLITS, read_only
from fer_core.errors import FerError, QuizError
from fer_core.quiz.rounds import (DEFAULT_FACES, DEFAULT_SPLIT, DRAW_TEXT, DRAWS, HUMAN_ACCURACY, HUMAN_SOURCE,
                                  MAX_TIMER_S, NICKNAME_CHARS, max_faces, results)
from fer_core.quiz.store import SESSION as SESSION_ID, limits, new_session, store_path
from ui import (active_source, big_face, cached_round, chart, confusion_chart, face_gallery, model_choices,
                model_select, quiz_store, round_faces, source_choices, use_app_navigation)

use_app_navigation(tensorflow=False)
st.title("Can you beat the network?")
if "quiz_play" not in st.session_state:  # the introduction; a phone needs the room for the face while playing
    st.caption(f"FER2013's paper reports that people label its faces right about {HUMAN_ACCURACY:.0%} of the time "
               "(Goodfellow et al., 2013). Label the same faces as the network, then see where you agree, where "
               "both of you fail, and which \"wrong\" answers may be wrong labels.")
if "quiz_session" not in st.session_state:  # anonymous: nothing about the person; kept in the address, so a
    given = st.query_params.get("player", "")  # reloaded page (a phone that dropped the tab) carries on
    st.session_state["quiz_session"] = given if SESSION_ID.fullmatch(given) else new_session()
SESSION = st.session_state["quiz_session"]
SOLO, JOIN, BOARD = "Play on your own", "Join a class round", "Class board (lecturer)"
MODES = [SOLO, JOIN] + ([] if read_only() else [BOARD])  # the board only on the lecturer's full server


def store():
    return quiz_store(str(store_path()))


def start(rnd, kind: str, picks: dict | None = None, nickname: str = "") -> None:
    st.session_state["quiz_play"] = {"round": rnd, "kind": kind, "picks": dict(picks or {}), "shown": None,
                                     "nickname": nickname, "error": None, "over": False}
    if kind == "class":
        st.query_params["player"] = SESSION


def next_face(play: dict) -> int | None:
    return next((k for k in range(play["round"].size) if k not in play["picks"]), None)


def pick(face: int, choice: int | None) -> None:
    """Record the answer to ``face`` (None: its time ran out) and move to the next. A click meant
    for a face already answered (a double tap, a click just after the timer) is dropped: it never
    answers a face the player has not seen."""
    play = st.session_state.get("quiz_play")
    if play is None or face != next_face(play):
        return
    rnd = play["round"]
    if play["kind"] == "class":
        try:
            store().answer(rnd.code, SESSION, face, choice, play["nickname"])
        except QuizError as exc:
            if "already" not in str(exc):  # answered in an earlier visit: move on; anything else: say it
                play["error"] = str(exc)
                play["over"] = "closed" in str(exc) or "No quiz round" in str(exc)  # nothing more can be stored
                return
    play["error"] = None
    play["picks"][face] = choice
    play["shown"] = None


def play_area() -> None:
    """One face, large, and the classes as buttons (keys 1-7); a timer when the round has one,
    counted from when the face is first drawn."""
    play = st.session_state["quiz_play"]
    rnd = play["round"]
    try:
        faces = round_faces(rnd)
    except FerError as exc:
        st.error(str(exc))
        return
    face = next_face(play)
    if face is not None and rnd.timer and play["shown"] and time.time() - play["shown"] >= rnd.timer:
        pick(face, None)  # the face's time ran out: left, and on to the next
        face = next_face(play)
    if face is None or play["over"]:
        st.rerun()  # the round is done (or closed): the whole page shows the results
    if play["shown"] is None:
        play["shown"] = time.time()
    st.progress(face / rnd.size, text=f"Face {face + 1} of {rnd.size}" +
                (f" · {max(0, rnd.timer - (time.time() - play['shown'])):.0f} s left" if rnd.timer else ""))
    with st.container(key="quiz_face"):
        st.image(big_face(faces[face]), width=288)
    with st.container(horizontal=True, key="quiz_buttons"):
        for c, name in enumerate(rnd.classes):
            st.button(name, key=f"quiz_pick_{c}", on_click=pick, args=(face, c), shortcut=str(c + 1) if c < 9 else None)
    if play["error"]:
        st.error(play["error"])
    st.caption(f"Which emotion does the label say? Click, tap, or press 1-{min(len(rnd.classes), 9)}. "
               + (f"{rnd.timer} s per face. " if rnd.timer else "") + round_caption(rnd))


def face_captions(rnd, doc: dict, positions, you: dict | None) -> list[str]:
    out = []
    for k in positions:
        f = doc["faces"][k]
        said = (f"you: {rnd.classes[you[k]] if you.get(k) is not None else 'no answer'}" if you is not None else
                f"{f['agreement']:.0%} right, most said {f['most_given']}")
        region = f"\ntraining: {f['region']}" if f["region"] else ""
        out.append(f"label {f['label']}\n{said}\nnetwork: {f['model']}{region}")
    return out


def scoreboard(doc: dict, who: str) -> None:
    """The headline: people (you or the class) against the network, with the paper's figure."""
    acc = doc["class_accuracy"]
    cols = st.container(key="metric_row_quiz").columns(3)  # side by side, wrapped on a phone
    cols[0].metric(who, "–" if acc is None else f"{acc:.0%}")
    cols[1].metric(f"The network ({doc['model']})", f"{doc['model_accuracy']:.0%}")
    cols[2].metric("People in FER2013's paper", f"{HUMAN_ACCURACY:.0%}", help=HUMAN_SOURCE)
    bars = pd.DataFrame({"who": [who, "the network"], "accuracy": [acc or 0.0, doc["model_accuracy"]]})
    both = alt.Chart(bars).mark_bar().encode(x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="share right",
                                                    axis=alt.Axis(format="%")),
                                              y=alt.Y("who:N", title=None), color=alt.Color("who:N", legend=None))
    rule = alt.Chart(pd.DataFrame({"accuracy": [HUMAN_ACCURACY]})).mark_rule(strokeDash=[4, 4], color="gray").encode(
        x="accuracy:Q")
    chart((both + rule).properties(height=110), width="stretch")
    st.caption(f"The dashed line: {HUMAN_SOURCE}.")


def matrices(doc: dict, who: str) -> None:
    left, right = st.container(key="wide_pair_quiz").columns(2)
    with left:
        chart(confusion_chart(doc["class_confusion"], doc["classes"], who), width="stretch")
    with right:
        chart(confusion_chart(doc["model_confusion"], doc["classes"], "The network"), width="stretch")


def label_doubts(rnd, doc: dict, faces: np.ndarray, you: dict | None) -> None:
    who = "you" if you is not None else "most of the class"
    wrong = [f["face"] for f in doc["faces"] if f["answers"] and (f["most_given"] != f["label"] or not f["model_right"])]
    st.subheader(f"Where {who} or the network disagree with the label")
    face_gallery(faces[wrong], face_captions(rnd, doc, wrong, you), columns=5, limit=40)
    st.subheader("Where everyone disagrees with the label: a wrong label?")
    doubt = doc["wrong_label"]
    face_gallery(faces[doubt], face_captions(rnd, doc, doubt, you), columns=5, limit=40)
    if doubt and not rnd.regions:
        st.caption("How the network learned these faces (its training dynamics) is known only for Training faces "
                   "of a run that recorded them: play a Training round with such a run to see each face's region.")


def player_results() -> None:
    play = st.session_state["quiz_play"]
    rnd = play["round"]
    you = play["picks"]
    if play["over"]:
        st.warning(f"{play['error']} Your score counts the {len(you)} faces you answered before.")
    doc = results(rnd, [(SESSION, k, c) for k, c in you.items()])
    st.subheader(f"Your score: {sum(c == rnd.labels[k] for k, c in you.items() if c is not None)} of "
                 f"{len(you) if play['over'] else rnd.size}")
    st.caption(round_caption(rnd))
    scoreboard(doc, "You")
    matrices(doc, "You")
    try:
        label_doubts(rnd, doc, round_faces(rnd), you)
    except FerError as exc:
        st.error(str(exc))
    if play["kind"] == "class" and not play["over"]:
        st.success(f"Your answers are in round {rnd.code}: the lecturer's board shows the class.")
    if st.button("Play another round", key="quiz_again"):
        st.session_state.pop("quiz_play")
        st.rerun()


def round_settings(choices: dict[str, str], seed: int, key: str) -> tuple:
    """The round's settings, inside a form: ``(model, source, split, faces, seed, draw, timer)``.
    Every widget has a key: a default that changes (the seed's) must not reset what was typed."""
    model = model_select("The network", choices, f"{key}_model")
    c1, c2, c3 = st.container(key=f"wrap_row_{key}_a").columns(3)
    source = c1.selectbox("Data", source_choices(), index=source_choices().index(active_source()), key=f"{key}_data")
    split = c2.selectbox("Split", SPLITS, index=SPLITS.index(DEFAULT_SPLIT), key=f"{key}_split")
    size = c3.number_input("Faces", 1, max_faces(), min(DEFAULT_FACES, max_faces()), key=f"{key}_faces")
    c4, c5, c6 = st.container(key=f"wrap_row_{key}_b").columns(3)
    draw = c4.selectbox("Faces drawn", DRAWS, help=" · ".join(f"{d}: {t}" for d, t in DRAW_TEXT.items()),
                        key=f"{key}_draw")
    if f"{key}_seed" not in st.session_state:
        st.session_state[f"{key}_seed"] = seed
    seed = c5.number_input("Seed (the same seed, the same faces)", 0, 10**6, key=f"{key}_seed")
    timer = c6.number_input("Seconds per face (0: no timer)", 0, MAX_TIMER_S, 0, key=f"{key}_timer")
    return model, source, split, int(size), int(seed), draw, int(timer)


def round_caption(rnd) -> str:
    return (f"{rnd.size} {rnd.split} faces of {rnd.source}, drawn {rnd.draw} ({DRAW_TEXT[rnd.draw]}), seed "
            f"{rnd.seed}; the network: {rnd.model_name} (TTA {rnd.tta}).")


def solo_form() -> None:
    choices = model_choices()
    if not choices:
        st.info("No model to play against yet: train one on the Train page.")
        return
    with st.form("quiz_solo"):
        settings = round_settings(choices, int(time.time()) % 1000, "quiz_solo")
        go = st.form_submit_button("Start", type="primary")
    if go:
        try:
            start(cached_round(*settings), "solo")
        except FerError as exc:
            st.error(str(exc))
            return
        st.rerun()


def join_form() -> None:
    code = st.text_input("Round code (from your lecturer)", key="quiz_code", max_chars=8,
                         value=st.query_params.get("code", ""), placeholder="e.g. KQTB")
    if not code:
        return
    try:
        rnd = store().get(code)
        done = store().answered(rnd.code, SESSION)
    except QuizError as exc:
        st.error(str(exc))
        return
    if not rnd.is_open(time.time()):
        st.error(f"Round {rnd.code} is closed: it takes no more answers. Ask your lecturer for the new code.")
        return
    st.write(f"Round **{rnd.code}**: {rnd.size} faces" + (f", {rnd.timer} s each" if rnd.timer else "") + ".")
    nickname = st.text_input(f"Nickname for the board (optional, at most {NICKNAME_CHARS} characters)",
                             max_chars=NICKNAME_CHARS, key="quiz_nickname") if rnd.nicknames else ""
    if st.button("Join", type="primary", key="quiz_join"):
        start(rnd, "class", done, nickname)
        st.rerun()


def open_form() -> None:
    choices = model_choices()
    lim = limits()
    with st.form("quiz_open"):
        st.write("**Open a round to the class**: everyone gets the same faces; the board below follows them live.")
        settings = round_settings(choices, 1, "quiz_open")
        nicknames = st.checkbox(f"Show nicknames on the board (students may give one, at most {NICKNAME_CHARS} "
                                "characters)")
        go = st.form_submit_button("Open the round", type="primary")
    st.caption(f"Limits: {lim['open_rounds']} rounds open at once, {lim['sessions']} students a round, "
               f"{lim['hours']} h before a round closes by itself (FER_QUIZ_* settings, README).")
    if go:
        try:
            st.session_state["quiz_board"] = store().open_round(cached_round(*settings), nicknames=nicknames).code
        except FerError as exc:
            st.error(str(exc))


def board(code: str) -> None:
    """The class against the network, live (refreshed every two seconds while the round is open)."""
    try:
        doc = store().results(code)
        rnd = store().get(code)
        faces = round_faces(rnd)
    except FerError as exc:
        st.error(str(exc))
        return
    state = "open" if doc["open"] else "closed"
    st.markdown(f"## Code: `{doc['code']}` ({state})")
    st.caption(round_caption(rnd))
    if doc["open"]:
        st.caption("Students: open the Quiz page of the class's server (its address ending in /quiz), choose "
                   "\"Join a class round\" and type this code.")
    c = st.columns(2)
    c[0].metric("Students", doc["sessions"])
    c[1].metric("Answers", f"{doc['answers']} of {doc['sessions'] * doc['faces_in_round']}")
    scoreboard(doc, "The class")
    matrices(doc, "The class")
    scores = pd.DataFrame(doc["scores"])
    if len(scores):
        st.subheader("Students' scores")
        chart(alt.Chart(scores).mark_bar().encode(
            x=alt.X("accuracy:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="share right", axis=alt.Axis(format="%")),
            y=alt.Y("count():Q", title="students")).properties(height=180), width="stretch")
        if "nickname" in scores:
            named = scores.dropna(subset=["nickname"]).sort_values("right", ascending=False).head(10)
            st.dataframe(named[["nickname", "right", "answers"]], hide_index=True)
    answered = [f for f in doc["faces"] if f["answers"]]
    hardest = [f["face"] for f in sorted(answered, key=lambda f: f["agreement"])][:10]
    st.subheader("The faces the class found hardest")
    face_gallery(faces[hardest], face_captions(rnd, doc, hardest, None), columns=5)
    label_doubts(rnd, doc, faces, None)


def lecturer() -> None:
    open_form()
    try:
        rounds = store().rounds()
    except QuizError as exc:
        st.error(str(exc))
        return
    if not rounds:
        st.info("No round yet: open one above (or `python -m fer_core quiz new`).")
        return
    codes = [r.code for r in rounds]
    if st.session_state.get("quiz_board") not in codes:
        st.session_state["quiz_board"] = codes[0]
    now = time.time()
    code = st.selectbox("Board of round", codes, key="quiz_board",
                        format_func=lambda c: next(f"{r.code} · {r.size} {r.split} faces · "
                                                   f"{'open' if r.is_open(now) else 'closed'}" for r in rounds if r.code == c))
    live = next(r for r in rounds if r.code == code).is_open(now)
    if live and st.button(f"Close round {code}", key="quiz_close"):
        try:
            store().close(code)
        except FerError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    st.fragment(run_every=2 if live else None)(board)(code)


mode = st.radio("Mode", MODES, horizontal=True, key="quiz_mode", label_visibility="collapsed",
                index=1 if st.query_params.get("code") else 0)
play = st.session_state.get("quiz_play")
if mode == BOARD:
    lecturer()
elif play is not None and (play["kind"] == "class") == (mode == JOIN):
    if len(play["picks"]) < play["round"].size and not play["over"]:
        st.fragment(run_every=1 if play["round"].timer else None)(play_area)()
    else:
        player_results()
elif mode == JOIN:
    join_form()
else:
    solo_form()
