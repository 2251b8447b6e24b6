"""Home page: what FER Studio is, what is active, and links to every page."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import streamlit as st

from fer_core.config import CLASS_NAMES, load_settings, read_only
from fer_core.errors import FerError
from fer_core.fmt import fmt_seconds
from fer_core.inference.loader import DEFAULT_MODEL, FAST_MODEL, resolve_model
from ui import prepare_for_class, use_app_navigation

settings = load_settings()
use_app_navigation(tensorflow=False)
st.title("FER Studio")
st.write(
    "Explore how a convolutional network learns to read emotions from faces: browse FER2013 "
    f"({len(CLASS_NAMES)} classes: {', '.join(CLASS_NAMES)}), train networks, inspect their "
    "mistakes and try them on your own photos."
)

source = settings.active_source()
col1, col2 = st.columns(2)
with col1:
    st.subheader("Active data set")
    if source == "demo":
        st.info("**Demo data set** (synthetic cartoon faces drawn by FER Studio). "
                "Point the app at FER2013 on the Dataset page, or set `FER2013_DIR`.")
    else:
        st.success(f"**{source}**" + (f" (classes merged: {settings.merge})" if settings.merge else ""))
with col2:
    st.subheader("Active model")
    try:
        ref = resolve_model()
        label = {DEFAULT_MODEL: "the shipped default model", FAST_MODEL: "the shipped fast model"}.get(
            ref.name, f"run {ref.name}")
        st.success(f"**{label}** ({len(ref.classes)} classes)")
    except FerError as exc:
        st.info(str(exc))

st.subheader("Pages")
st.page_link("pages/dataset.py", label="Dataset: browse the faces by class and split", icon="🗂️")
st.page_link("pages/train.py", label="Train: launch background training jobs and watch them", icon="🏋️")
st.page_link("pages/runs.py", label="Runs: loss and accuracy curves, comparison, the study table", icon="📈")
st.page_link("pages/evaluate.py", label="Evaluate: confusion matrix, per-class report, mistakes", icon="🎯")
st.page_link("pages/explore.py", label="Explore: inside the network, from its map of the faces to how it learned "
             "each one", icon="🔬")
st.page_link("pages/predict.py", label="Predict: upload a photo or use the camera, get every face's emotion", icon="📷")
st.page_link("pages/quiz.py", label="Quiz: can you beat the network? Alone, or the whole class at once", icon="🧠")

if not read_only():
    st.subheader("Prepare for class")
    st.write("Compute ahead what a lesson opens (the shipped models' evaluations on the test splits, Explore's "
             "maps, the runs' training dynamics) so that in class they open in seconds. Takes a minute or two; "
             "or run `python -m fer_core warmup --data ...` before you come.")
    if st.button("Prepare for class", key="home_prepare"):
        try:
            done = prepare_for_class(source)
        except FerError as exc:
            st.error(str(exc))
        else:
            st.success(f"Ready: {len(done)} steps, {sum(not d['cached'] for d in done)} computed now.")
            for d in done:
                st.caption(("already prepared" if d["cached"] else f"computed in {fmt_seconds(d['seconds'])}")
                           + f": {d['step']}")
