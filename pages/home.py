"""Home page: what FER Studio is, what is active, and links to every page."""

import streamlit as st

from fer_core.config import CLASS_NAMES, load_settings
from fer_core.errors import FerError
from fer_core.inference.loader import DEFAULT_MODEL, FAST_MODEL, resolve_model
from ui import use_app_navigation

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
