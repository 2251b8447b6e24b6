"""Helpers shared by the pages: cached loaders and the active settings (UI side only)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlencode

import altair as alt
import numpy as np
import pandas as pd


import bootstrap  # first: the start-up steps (aiortc before TensorFlow...), when a page did not import it
import streamlit as st

from streamlit.errors import StreamlitPageNotFoundError
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException
from PIL import Image

from fer_core.config import check_writable, fer2013_dir, load_settings, read_only
from fer_core.data.loading import Dataset, check_allowed, load_dataset
from fer_core.data.loading import source_choices as data_source_choices
from fer_core.data.demo import make_demo_dataset
from fer_core.device import quiet_tensorflow, tensorflow_ready
from fer_core.errors import FerError
from fer_core.inference.evaluate import evaluate_cached
from fer_core.jobs.sqlite import connect, store_path
from fer_core.jobs.scheduler import start_scheduling_loop
from fer_core.shipping.export import export_zip
from fer_core.fmt import fmt_seconds
from fer_core.inference.engine import load_engine
from fer_core.inference.loader import (DEFAULT_MODEL, FAST_MODEL, default_model, resolve_model,
                                      shipped_model, speed_model)
from fer_core.models.build import create_model, list_models
from fer_core.inference.explore import FaceViews, embed_cached, face_views
from fer_core.inference.photo import ImageResult, analyse, draw
from fer_core.training.catalog import list_runs
from fer_core.shared import analysis_gate, release_memory, result_cache
from fer_core.training.dynamics import REGIONS, cartography_with_faces
from fer_core.quiz.rounds import Round, check_settings, make_round
from fer_core.quiz.store import QuizStore
from fer_core.shipping.warmup import plan, warm


def use_app_navigation(tensorflow: bool = True) -> None:
    """Call first on every page: make sure the app's own navigation (``app.py``) drives it.

    With ``tensorflow`` (every page but those that never touch a model) it also waits, once per
    server, for the background import of TensorFlow to finish: a session's own first ``import
    tensorflow`` racing it would leave a half-initialised module for the life of the server
    (:func:`fer_core.device.quiet_tensorflow`).

    The start-up steps are :mod:`bootstrap`'s, which every page imports first: the app's own
    navigation is checked again here for a page run some other way, and TensorFlow's background
    import starts here, once the page's own imports are done.
    """
    bootstrap.app_navigation()
    bootstrap.import_tensorflow_in_background()
    st.markdown(SCREEN_CSS, unsafe_allow_html=True)
    if tensorflow and not tensorflow_ready():
        with st.spinner("Starting TensorFlow (once per server)…"):
            try:
                quiet_tensorflow()
            except Exception:  # a broken install shows where TensorFlow is used, with its message
                pass
    if not read_only():
        try:
            keep_store_open(str(store_path()))
        except FerError:
            pass  # a damaged store: the pages that read it say so, and how to repair it
    if read_only():
        st.sidebar.info("🔒 **Read-only server**: browse the data, runs and results, analyse photos and play the "
                        "quiz; nothing here changes anything (it stores only quiz answers).")
    presentation_switch()


#: The session's presentation mode: kept in the session (a widget's own state is per page) and
#: settable by URL (``?present=1``), so the projector's tab opens in it.
PRESENT = "present"


def presenting() -> bool:
    """True while this session is in presentation mode (see :func:`presentation_switch`)."""
    return bool(st.session_state.get(PRESENT))


def presentation_switch() -> None:
    """The sidebar's presentation switch, the same on every page, and its CSS when on."""
    if PRESENT not in st.session_state:
        st.session_state[PRESENT] = st.query_params.get(PRESENT) == "1"

    def flip() -> None:
        st.session_state[PRESENT] = st.session_state["ui_present_switch"]

    st.sidebar.toggle("Presentation mode (back row)", value=st.session_state[PRESENT], key="ui_present_switch",
                      on_change=flip, help="Larger headline numbers, captions, chart axes and legends, matrix "
                      "cells and labels on photos, on every page; open a page with ?present=1 to start in it.")
    if presenting():
        st.markdown(PRESENT_CSS, unsafe_allow_html=True)
        if st.query_params.get(PRESENT) != "1":
            st.query_params[PRESENT] = "1"  # a reload of this tab stays in presentation mode
    elif PRESENT in st.query_params:
        del st.query_params[PRESENT]


#: Presentation mode's sizes: chart text in pixels (Vega draws it), page text in rem.
PRESENT_CHART = {"axis": 17, "title": 19, "legend": 16, "text": 18}


def chart(spec, **kwargs):
    """``st.altair_chart`` for every chart of the app: in presentation mode its axes, legends,
    title and text marks (a confusion matrix's cells) are enlarged."""
    if presenting():
        size = PRESENT_CHART
        spec = (spec.configure_axis(labelFontSize=size["axis"], titleFontSize=size["title"], labelLimit=260)
                .configure_legend(labelFontSize=size["legend"], titleFontSize=size["legend"], symbolSize=160)
                .configure_title(fontSize=size["title"]).configure_text(fontSize=size["text"]))
    return st.altair_chart(spec, **kwargs)


@st.cache_resource(show_spinner=False)
def keep_store_open(path: str):
    """One connection to the job store held for the life of the full server: SQLite keeps the
    store's ``-wal`` and ``-shm`` files while any connection is open, so a read-only server beside
    it reads the live store through them (``mode=ro``) instead of the main file alone, which this
    server may be writing (:func:`fer_core.jobs.sqlite.connect`)."""
    return connect(path)


def scheduling_loop() -> None:
    """Call first on the pages that show jobs: the full server's one scheduling loop keeps the jobs
    moving (:func:`fer_core.jobs.start_scheduling_loop`: idempotent, so a loop that ended is
    started again by the next visit; never on a read-only server), so that the pages' own looks at
    the store only read."""
    start_scheduling_loop()


#: Every screen from a phone (390 px) to a projector (800-1280 px, sidebar open): pictures never
#: wider than their column, columns that wrap instead of squeezing their content, charts that
#: resize, and no sideways scrolling of the main area.
SCREEN_CSS = """<style>
[data-testid="stMain"] { overflow-x: hidden; }
[data-testid="stImage"], [data-testid="stImageContainer"] { max-width: 100%; }
[data-testid="stImage"] img, [data-testid="stImageContainer"] img { max-width: 100% !important; height: auto !important; }
[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"] { max-width: 100%; }
[data-testid="stColumn"] { min-width: 0; }
[class*="st-key-wide_pair"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[class*="st-key-wide_pair"] [data-testid="stColumn"] { min-width: min(100%, 420px); }
[class*="st-key-face_card"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[class*="st-key-face_card"] [data-testid="stColumn"]:nth-child(2) { min-width: min(100%, 260px); }
[class*="st-key-face_card"] [data-testid="stColumn"]:not(:nth-child(2)) { min-width: 110px; }
[class*="st-key-metric_row"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; row-gap: 0.5rem; }
[class*="st-key-metric_row"] [data-testid="stColumn"] { min-width: 120px; flex: 1 1 120px; }
[class*="st-key-metric_row"] [data-testid="stMetricLabel"] p { white-space: normal; }
[class*="st-key-wrap_row"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; row-gap: 0.5rem; }
[class*="st-key-wrap_row"] [data-testid="stColumn"] { min-width: 150px; flex: 1 1 150px; }
[class*="st-key-grid_row"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[class*="st-key-grid_row"] [data-testid="stColumn"] { min-width: 0; flex: 1 1 0; }
@media (max-width: 1400px) {  /* rows of 8 as two even rows of 4, never 5 small and 3 large */
  [class*="st-key-grid_row"] [data-testid="stColumn"] { flex: 0 0 calc(25% - 0.75rem); }
}
[class*="st-key-grid_row"] button p { font-size: 0.8rem; white-space: normal; }
[data-testid="stCaptionContainer"], [data-testid="stImageCaption"], [data-testid="stWidgetLabel"] p,
[data-testid="stRadio"] label p { word-break: normal; overflow-wrap: normal; hyphens: manual; }
</style>"""
PRESENT_CSS = """<style>
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p, [data-testid="stMain"] li { font-size: 1.3rem; }
[data-testid="stMain"] [data-testid="stCaptionContainer"], [data-testid="stMain"] [data-testid="stCaptionContainer"] p,
[data-testid="stMain"] [data-testid="stImageCaption"] { font-size: 1.15rem; }
[data-testid="stMain"] [data-testid="stMetricValue"], [data-testid="stMain"] [data-testid="stMetricValue"] div { font-size: 3.4rem; }
[data-testid="stMain"] [data-testid="stMetricLabel"] p { font-size: 1.3rem; }
[data-testid="stMain"] h1 { font-size: 3.2rem; }
[data-testid="stMain"] h2 { font-size: 2.4rem; }
[data-testid="stMain"] h3 { font-size: 1.9rem; }
[data-testid="stMain"] button p, [data-testid="stMain"] label p { font-size: 1.2rem; }
</style>"""


def link_to(page: str, label: str, **params) -> None:
    """A link to another page of the app (``pages/runs.py``) with query parameters.

    When the page runs on its own (``AppTest`` on one file: no ``st.navigation`` to link
    through), a plain link to the same address.
    """
    try:
        st.page_link(page, label=label, query_params=params)
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}](./{Path(page).stem}?{urlencode(params)})")


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_dataset(source: str, merge: str = "", skip_bad: bool = False) -> Dataset:
    """Load a data set once per (source, merge, skip_bad), for every session of this server (the
    four used last).

    A resource, not ``st.cache_data``: that hands every caller a copy (82 MB of faces for
    FER2013, copied on every rerun). The data set is shared and read-only; an image folder's
    first load shows files done and time left. Only folders the app may read are loaded: a typed
    path elsewhere is a DataError (not cached: the next try loads again).
    """
    bar, started = st.empty(), time.monotonic()

    def progress(done: int, total: int) -> None:
        left = (time.monotonic() - started) * (total - done) / done
        bar.progress(done / total, text=f"Reading {total:,} image files: {done:,} done, about {fmt_seconds(left)} left")

    try:
        with st.spinner("Loading the data set…"):
            return load_dataset(check_allowed(source), merge=merge, skip_bad=skip_bad, progress=progress)
    finally:
        bar.empty()


def active_source() -> str:
    """The data source the app uses when a page is not told otherwise."""
    return load_settings().active_source()


@st.cache_data(show_spinner=False)
def model_table() -> dict[str, dict]:
    """The registry: ``{name: {"description", "crop"}}``, without building a model (no TensorFlow)."""
    return {m["name"]: m for m in list_models(with_params=False)}


@st.cache_data(show_spinner=False, max_entries=64)
def param_count(arch: str, crop: int, options: str) -> int:
    """Parameters of ``arch`` at ``crop`` with its builder ``options`` (JSON): the form's own
    configuration, not the preset's. Builds the model once per combination."""
    return int(create_model(arch, 7, crop=crop, **json.loads(options)).count_params())


def source_choices() -> list[str]:
    """Data sources to offer: the demo, the active one, then the data sets the app knows of."""
    return data_source_choices(active_source())


def model_choices() -> dict[str, str]:
    """Models to offer, ``{spec for resolve_model: label}``: the shipped default (the most
    accurate), the shipped fast one when there is one, then finished runs."""
    out = {}
    if default_model() is not None:
        out[DEFAULT_MODEL] = "Shipped default model (most accurate)"
    if shipped_model(FAST_MODEL) is not None:
        out[FAST_MODEL] = "Shipped fast model (for live views)"
    for run in list_runs():
        if run.error is None and run.model_file is not None:
            acc = run.best.get("val_accuracy")
            out[str(run.path)] = f"run {run.name}" + (f" (val {acc:.1%})" if acc is not None else "") + \
                ("" if run.finished else f" [{run.status}]")
    return out


def app_index(choices: dict[str, str]) -> int:
    """Where a model select starts by default: at the app's model (the one chosen in the settings,
    else the shipped default, else the newest finished run; see ``resolve_model``), else at the first
    choice. Never at the fast model merely because it comes first."""
    try:
        ref = resolve_model(None)
    except FerError:
        return 0
    for i, spec in enumerate(choices):
        if spec == ref.name or Path(spec) in (ref.path, ref.path.parent):
            return i
    return 0


def speed_index(choices: dict[str, str], otherwise: str | None = None) -> int:
    """Where a model select starts in a view where speed matters (video, live camera, Explore):
    at the shipped fast model when there is one, else at ``otherwise`` (e.g. the model chosen for
    photos), else at the app's model (:func:`app_index`)."""
    for spec in (speed_model(), otherwise):
        if spec in choices:
            return list(choices).index(spec)
    return app_index(choices)


def model_select(label: str, choices: dict[str, str], key: str, index: int | None = None, **kwargs) -> str | None:
    """A page's model picker: a select box of ``choices`` (:func:`model_choices`) shown by their
    labels, starting at ``index`` (default: the app's model, :func:`app_index`); other keywords go
    to ``st.selectbox``. None, and no box, when there is no model to choose."""
    if not choices:
        return None
    return st.selectbox(label, list(choices), index=app_index(choices) if index is None else index,
                        format_func=lambda k: choices.get(k, k), key=key, **kwargs)


@contextmanager
def stop_on_error():
    """Run the block; a :class:`~fer_core.errors.FerError` it raises is shown as the page's error
    and stops the page there (what a page does when what it shows cannot be had)."""
    try:
        yield
    except FerError as exc:
        st.error(str(exc))
        st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def cached_model(path: str, stamp: str):
    """A loaded model, kept across reruns and sessions until its file changes (``stamp``). Always
    keyed by the model file's path, so a model named two ways ("fast", its folder) loads once."""
    return load_engine(resolve_model(path))


def cached_evaluation(model: str, source: str, split: str, tta: str):
    """``(EvalResult, merge)`` of a model on a split; memory-cached here, disk-cached in fer_core."""
    ref = resolve_model(model)
    return gated(_evaluation, model, ref.stamp, source, split, tta, progress=f"Evaluating {ref.name} on {split}")


def _evaluation(model: str, stamp: str, source: str, split: str, tta: str, progress=None):
    ref = resolve_model(model)
    ds = cached_dataset(source, ref.merge)
    res, _ = evaluate_cached(ref, ds, None if split == "all" else split, tta,
                             load=lambda r: cached_model(str(r.path), stamp), progress=progress)
    return res, ref.merge


def cached_export(model: str, fmt: str, quantize: str, log=lambda line: None) -> tuple[str, bytes]:
    """``(file name, zip bytes)`` of a model's export (see :func:`fer_core.shipping.export.export_zip`),
    made once per model file, format and quantization, through the analysis gate (an export takes a
    core for a minute); ``log(line)`` hears each of its steps. Never on a read-only server: its
    exports are made on the full one."""
    check_writable("Exporting a model")
    return gated(_export, model, resolve_model(model).stamp, fmt, quantize, log=log)


def _export(model: str, stamp: str, fmt: str, quantize: str, log=lambda line: None) -> tuple[str, bytes]:
    return export_zip(model, fmt, quantize, log=log)


@st.cache_data(show_spinner=False)
def example_faces() -> dict[str, bytes]:
    """Faces to try on the Predict page: demo faces drawn by our code, and two FER2013 faces
    read from ``FER2013_DIR`` when it is set up (never copied into the repo)."""



    demo = make_demo_dataset(per_class=1, seed=7)
    out = {}
    for want in ("happy", "surprise", "sad"):
        i = demo.class_names.index(want)
        buf = io.BytesIO()
        Image.fromarray(demo.images[list(demo.labels).index(i)], "L").save(buf, "PNG")
        out[f"drawn {want} face"] = buf.getvalue()
    root = fer2013_dir()
    for cls in ("happy", "surprise"):
        folder = Path(root or "/nonexistent") / "test" / cls
        files = sorted(folder.glob("PrivateTest_*"))[:1] if folder.is_dir() else []
        for f in files:
            out[f"FER2013 {cls} face"] = f.read_bytes()
    return out


@contextmanager
def analysis_slot():
    """Hold one of the server's analysis places (:func:`fer_core.shared.analysis_gate`) while the
    block runs; while others hold them all, say how many are ahead instead of hanging."""
    note = st.empty()

    def waiting(n: int) -> None:
        note.info(f"Waiting for {n} other {'analysis' if n == 1 else 'analyses'} on this server to finish…",
                  icon="⏳")

    try:
        with analysis_gate().slot(on_wait=waiting):
            note.empty()
            yield
    finally:
        note.empty()
        release_memory()


class Report:
    """``report(done, total)`` for a long computation's progress bar (:func:`progress_bar`).

    Streamlit may stop a script at any element it draws, to rerun it (a widget touched, another
    page opened): a stop at the bar would throw the computation away with its result. The first
    such request is held here, the bar stops moving and the computation finishes; the caller
    keeps the result (:func:`gated` caches it), then :meth:`carry_on` lets the request through."""

    def __init__(self, bar, what: str, finishing: str):
        self.bar, self.what, self.finishing = bar, what, finishing
        self.started, self.held = time.monotonic(), None

    def __call__(self, done: int, total: int) -> None:
        if self.held is not None:
            return
        if done >= total:
            text = f"{self.what}: all {total:,} faces done; {self.finishing}…"
        elif done > 0:
            left = (time.monotonic() - self.started) * (total - done) / done
            text = f"{self.what}: {done:,} of {total:,} faces, about {fmt_seconds(left)} left"
        else:
            return
        try:
            self.bar.progress(min(done / total, 1.0), text=text)
        except ScriptControlException as exc:
            self.held = exc

    def carry_on(self) -> None:
        """Let a held stop or rerun request through, now that the result is kept."""
        if self.held is not None:
            raise self.held


@contextmanager
def progress_bar(what: str, finishing: str = "finishing"):
    """A progress bar for a long computation, fed by its real progress: yields a :class:`Report`
    (``report(done, total)``, in faces), which shows how many are done and the time left at the
    pace so far."""
    report = Report(st.progress(0.0, text=f"{what}: starting…"), what, finishing)
    try:
        yield report
    finally:
        try:
            report.bar.empty()
        except ScriptControlException as exc:
            report.held = report.held or exc


def gated(fn, *args, spinner: str | None = None, progress: str | None = None, finishing: str = "finishing",
          **callbacks):
    """``fn(*args)``, kept in the server's result cache (:func:`fer_core.shared.result_cache`) and
    computed through the analysis gate: a cached result is returned at once and never waits behind
    others' analyses; one the cache no longer holds is computed again through the gate (the cache
    is the one record of what it holds, so nothing skips the gate without being cached).

    ``progress``: what the computation does, shown on a progress bar that ``fn`` feeds through
    its ``progress`` keyword (:func:`progress_bar`); else ``spinner``, a spinner's text. Other
    keywords go to ``fn`` as they are and are no part of the key (callbacks such as ``log``)."""
    digest = hashlib.sha1(fn.__name__.encode())
    for a in args:  # a photo's bytes as they are, the settings by their repr
        digest.update(a if isinstance(a, bytes) else repr(a).encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    found, out = result_cache().get(key)
    if found:
        return out
    with analysis_slot():
        found, out = result_cache().get(key)  # another session computed it while this one waited
        if not found:
            if progress:
                with progress_bar(progress, finishing) as report:
                    out = fn(*args, progress=report, **callbacks)
                result_cache().put(key, out)
                report.carry_on()  # a rerun asked for during the work: now, with the result kept
            else:
                with st.spinner(spinner) if spinner else nullcontext():
                    out = fn(*args, **callbacks)
                result_cache().put(key, out)
    return out


def cached_analysis(name: str, data: bytes, model: str, stamp: str, detect: str, tta: str,
                    explain: bool, detector: str, occlude: bool = False) -> tuple[ImageResult, bytes]:
    """:func:`_analysis`, through the server's analysis gate on a cache miss; its labels drawn
    larger in presentation mode."""
    return gated(_analysis, name, data, model, stamp, detect, tta, explain, detector, occlude, presenting())


def _analysis(name: str, data: bytes, model: str, stamp: str, detect: str, tta: str,
              explain: bool, detector: str, occlude: bool = False, larger: bool = False) -> tuple[ImageResult, bytes]:
    """One photo's faces and predictions, and the photo with its boxes drawn (JPEG bytes),
    computed once per (content, model, settings).

    A widget change that does not touch these settings, or the same photo uploaded again, costs
    nothing. An entry holds no decoded photo, only the drawn one, compressed (a few hundred KB),
    so many large photos do not pile up in the server's memory.
    """
    ref = resolve_model(model)
    res = analyse([(name, data)], cached_model(str(ref.path), stamp), ref.classes, detect=detect, tta=tta,
                  explain=explain, detector=detector, occlude=occlude)[0]
    drawn = b""
    if res.image is not None:
        buf = io.BytesIO()
        draw(res, larger=larger).save(buf, "JPEG", quality=85)
        drawn = buf.getvalue()
    res.image = None
    return res, drawn


# ------------------------------------------------------------------------------------- Explore
def cached_embedding(model: str, source: str, split: str, method: str, sample: int | None):
    """The map of a split (:func:`fer_core.inference.explore.embed`), computed once per model file,
    data, split, layout and sample, through the analysis gate."""
    ref = resolve_model(model)
    return gated(_embedding, model, ref.stamp, source, split, method, sample,
                 progress=f"The features of {ref.name} on {split}", finishing=f"laying out the map ({method})")


def _embedding(model: str, stamp: str, source: str, split: str, method: str, sample: int | None, progress=None):
    ref = resolve_model(model)
    emb, _ = embed_cached(ref, cached_dataset(source, ref.merge), split, method, sample,
                          load=lambda r: cached_model(str(r.path), stamp), progress=progress)
    return emb


def cached_face_views(model: str, face: np.ndarray) -> FaceViews:
    """One face inside the model: its layers, Grad-CAM, occlusion and the what-if probabilities."""
    return gated(_face_views, model, resolve_model(model).stamp, np.ascontiguousarray(face, np.uint8).tobytes(),
                 spinner="Looking inside the network…")


def _face_views(model: str, stamp: str, face: bytes) -> FaceViews:
    return face_views(cached_model(str(resolve_model(model).path), stamp), np.frombuffer(face, np.uint8).reshape(48, 48))


@st.cache_data(max_entries=8, ttl=1800, show_spinner="Reading the training dynamics…")
def cached_cartography(run: str, stamp: float) -> tuple[dict, np.ndarray] | None:
    """A run's cartography (:mod:`fer_core.training.dynamics`) and its followed faces' images, or
    None when the run recorded none; ``stamp``: the dynamics file's modification time."""
    return cartography_with_faces(run, lambda source, merge: cached_dataset(source, merge))


def face_url(face: np.ndarray, side: int = 72) -> str:
    """A 48x48 face as a PNG data URL (a chart tooltip shows it)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(face, np.uint8)).resize((side, side), Image.Resampling.NEAREST).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def face_gallery(faces: np.ndarray, captions: list[str], columns: int = 8, limit: int = 32) -> None:
    """Faces in rows of ``columns``, at most ``limit``, each with its caption."""
    if not len(faces):
        st.caption("No faces here.")
        return
    shown = min(limit, len(faces))
    for start in range(0, shown, columns):
        cols = st.columns(columns)
        for col, k in zip(cols, range(start, min(start + columns, shown))):
            col.image(np.asarray(faces[k], np.uint8), caption=captions[k], width="stretch")
    if len(faces) > shown:
        st.caption(f"{shown} of {len(faces)} faces shown.")


def show_cartography(found: tuple[dict, np.ndarray], key: str) -> None:
    """A run's training dynamics (from :func:`cached_cartography`): the regions' counts, the map of
    confidence against variability (each face on hover), and a region's faces, least learned first."""
    doc, faces = found
    regions = doc["regions"]
    cols = st.columns(3)
    for col, name, text in zip(cols, REGIONS, ("easy to learn", "ambiguous", "hard to learn")):
        col.metric(text, f"{regions[name]:,}", help={"easy": "confident and steady over the epochs",
                                                     "ambiguous": "the third of the faces whose true-class "
                                                                  "probability varied most over the epochs (standard "
                                                                  f"deviation {doc['ambiguous_from']:.2f} or more)",
                                                     "hard": "steadily given little probability"}[name])
    pts = pd.DataFrame(doc["faces"])
    pts["image"] = [face_url(f) for f in faces]
    dots = alt.Chart(pts).mark_circle(size=24, opacity=0.7).encode(
        x=alt.X("variability:Q", title="variability (std of the true class's probability)"),
        y=alt.Y("confidence:Q", title="confidence (mean probability of the true class)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("correctness:Q", scale=alt.Scale(scheme="redyellowgreen", domain=[0, 1]),
                        title="share of epochs right"),
        tooltip=["image", "true", "confidence", "variability", "correctness", "region"]).properties(height=420)
    chart(dots, width="stretch")
    st.caption(f"{len(pts):,} Training faces followed over {doc['epochs']} epochs. In FER2013 the hard-to-learn "
               "corner (bottom left) is where mislabelled faces gather: look at them below and judge the label.")
    region = st.radio("Faces of a region", REGIONS, index=2, horizontal=True, key=f"{key}_region",
                      format_func={"easy": "easy to learn", "ambiguous": "ambiguous", "hard": "hard to learn"}.get)
    inside = np.flatnonzero(pts.region == region)
    inside = inside[np.argsort(pts.confidence.values[inside])]  # the least learned first
    face_gallery(faces[inside], [f"labelled {pts.true[k]}\nconfidence {pts.confidence[k]:.2f}" for k in inside])


# ---------------------------------------------------------------------------------------- Quiz
def cached_round(model: str, source: str, split: str, size: int, seed: int, draw: str, timer: int) -> Round:
    """A quiz round drawn from a data set and answered by a model (:func:`fer_core.quiz.rounds.make_round`),
    made once per settings and model file, through the analysis gate."""
    return gated(_round, model, resolve_model(model).stamp, source, split, size, seed, draw, timer,
                 spinner="Drawing the faces; the network answers them…")


def _round(model: str, stamp: str, source: str, split: str, size: int, seed: int, draw: str, timer: int) -> Round:
    ref = resolve_model(model)
    check_settings(size, draw, split, timer, seed)
    quiet_tensorflow()  # a model that Keras runs must not race the background import (use_app_navigation)
    return make_round(cached_dataset(source, ref.merge), split, size, seed, cached_model(str(ref.path), stamp), ref,
                      draw=draw, timer=timer, source=source)


def round_faces(rnd: Round) -> np.ndarray:
    """A round's faces, from this server's copy of its data set (QuizError when that copy differs)."""
    return rnd.faces(cached_dataset(rnd.source, rnd.merge))


@st.cache_resource(show_spinner=False)
def quiz_store(path: str) -> QuizStore:
    """One connection to the quiz store for every session of this server (it serialises its calls);
    on a read-only server, once the lecturer's side has made the file."""
    return QuizStore(path)


def big_face(face: np.ndarray, side: int = 288) -> Image.Image:
    """A 48x48 face enlarged for a quiz (smoothly: the pixels of a face are not the point)."""
    return Image.fromarray(np.asarray(face, np.uint8)).resize((side, side), Image.Resampling.LANCZOS)


def confusion_chart(matrix, classes: list[str], title: str, height: int = 300) -> alt.LayerChart:
    """A confusion matrix as a heat map: rows true, columns answered, each cell its count and row share."""
    cm = np.asarray(matrix)
    rows = cm.sum(axis=1, keepdims=True)
    cells = pd.DataFrame([{"true": classes[i], "answered": classes[j], "count": int(cm[i, j]),
                           "percent": float(cm[i, j] / rows[i, 0] * 100) if rows[i, 0] else 0.0}
                          for i in range(len(classes)) for j in range(len(classes))])
    base = alt.Chart(cells, title=title).encode(x=alt.X("answered:N", sort=classes, title="answered"),
                                                y=alt.Y("true:N", sort=classes, title="label"))
    heat = base.mark_rect().encode(color=alt.Color("percent:Q", title="% of row", legend=None,
                                                   scale=alt.Scale(scheme="blues", domain=[0, 100])),
                                   tooltip=["true", "answered", "count", alt.Tooltip("percent:Q", format=".0f")])
    text = base.mark_text(baseline="middle").encode(
        text=alt.condition("datum.count > 0", alt.Text("count:Q"), alt.value("")),
        color=alt.condition("datum.percent > 50", alt.value("white"), alt.value("black")))
    return (heat + text).properties(height=height)


# ----------------------------------------------------------------------------- Prepare for class
def prepare_for_class(source: str) -> list[dict]:
    """Compute ahead what a lesson opens (:mod:`fer_core.shipping.warmup`) through this server's
    model and data set caches and the analysis gate, on one bar fed by each step's batches."""
    steps = plan()
    report = Report(st.progress(0.0, text=f"Preparing {len(steps)} steps…"), "", "")
    now = {"k": 0, "title": ""}

    def show(fraction: float, text: str) -> None:  # a rerun asked for meanwhile waits for the end (Report)
        if report.held is None:
            try:
                report.bar.progress(min(1.0, fraction), text=text)
            except ScriptControlException as exc:
                report.held = exc

    def on_step(k: int, total: int, step) -> None:
        now.update(k=k, title=step.title)
        show(k / total, f"Step {k + 1} of {total}: {step.title}")

    def progress(done: int, total: int) -> None:
        show((now["k"] + done / max(total, 1)) / len(steps),
             f"Step {now['k'] + 1} of {len(steps)}: {now['title']}: {done:,} of {total:,} faces")

    quiet_tensorflow()  # a model that Keras runs must not race the background import (use_app_navigation)
    try:
        with analysis_slot():
            done = warm(source, steps, on_step=on_step, progress=progress,
                        load=lambda ref: cached_model(str(ref.path), ref.stamp),
                        dataset=lambda src, merge: cached_dataset(src, merge))
    finally:
        try:
            report.bar.empty()
        except ScriptControlException as exc:
            report.held = report.held or exc
    report.carry_on()
    return done
