"""Explore page: inside the network. How it arranges the faces (a map of its features), what each
layer sees of one face, which parts of the face decide its answer, and how it learned each face."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from fer_core.config import SPLITS
from fer_core.errors import FerError
from fer_core.inference.explain import overlay
from fer_core.inference.explore import EDITS, KNN, METHODS, FaceViews
from fer_core.inference.loader import resolve_model
from fer_core.inference.photo import PHOTO_TYPES
from fer_core.training.dynamics import dynamics_stamp, runs_with_dynamics
from ui import (active_source, cached_analysis, cached_cartography, cached_dataset, cached_embedding,
                cached_face_views, chart, face_gallery, face_url, model_choices, model_select, show_cartography,
                speed_index, stop_on_error, use_app_navigation)

use_app_navigation()
st.title("Explore: inside the network")

choices = model_choices()
if not choices:
    st.info("No model yet: train one on the Train page (or restore the shipped default model).")
    st.stop()
with st.sidebar:
    model = model_select("Model", choices, "ex_model", speed_index(choices),
                         help="The shipped fast model, when there is one, is the default here: maps, layers and "
                              "occlusion answer sooner. Choose the default model for the most accurate answers.")
    source = active_source()
    st.caption(f"Data set: **{source}** (change it on the Dataset page)")
with stop_on_error():
    ref = resolve_model(model)
classes = list(ref.classes)
COLOURS = alt.Scale(domain=classes, scheme="tableau10")


def grid(maps: list, cols: int = 8, cell: int = 40) -> np.ndarray:
    """Small 0-1 maps side by side as one grey picture (a gap between them)."""
    rows = (len(maps) + cols - 1) // cols
    out = np.full((rows * (cell + 2), min(cols, len(maps)) * (cell + 2)), 255, np.uint8)
    for k, m in enumerate(maps):
        img = Image.fromarray((np.asarray(m) * 255).astype(np.uint8)).resize((cell, cell), Image.Resampling.NEAREST)
        r, c = divmod(k, cols)
        out[r * (cell + 2):r * (cell + 2) + cell, c * (cell + 2):c * (cell + 2) + cell] = np.asarray(img)
    return out


tab_map, tab_layers, tab_why, tab_dyn = st.tabs(["Map of the faces", "Layer by layer", "Why this answer",
                                                 "How it learned each face"])


# ---------------------------------------------------------------------------------- the map
@st.fragment
def map_section() -> None:
    c1, c2, c3, c4 = st.container(key="wrap_row_map").columns(4)  # two by two on a phone
    split = c1.selectbox("Split", SPLITS, index=SPLITS.index("PublicTest"), key="ex_split")
    method = c2.selectbox("Layout", METHODS, key="ex_method", format_func={"pca": "PCA (at once)",
                                                                          "tsne": "t-SNE (slower, clusters)"}.get)
    sample = c3.select_slider("Faces", [300, 1000, 2000, 4000], value=1000, key="ex_sample",
                              help="A fixed random sample of the split (the same every time).")
    colour = c4.radio("Colour by", ["true class", "predicted class", "right or wrong"], key="ex_colour")
    other = st.selectbox("Side by side with", ["(none)", *[m for m in choices if m != model]], key="ex_other",
                         format_func=lambda m: choices.get(m, m))
    ds = cached_dataset(source, ref.merge)
    part = ds.subset(split)
    if len(part) < 3:
        st.warning(f"The {split} split of {source} has {len(part)} face(s); choose another split.")
        return
    shown = [model] + ([other] if other != "(none)" else [])
    columns = st.columns(len(shown))
    picked = None
    for col, which in zip(columns, shown):
        with col:
            try:
                emb = cached_embedding(which, source, split, method, sample)
                names = list(resolve_model(which).classes)  # each model its own classes (merged or not)
            except FerError as exc:
                st.error(str(exc))
                continue
            st.markdown(f"**{choices.get(which, which)}**")
            m1, m2 = st.container(key=f"metric_row_map_{which}").columns(2)
            m1.metric(f"{KNN}-NN accuracy, all features", f"{emb.knn_full:.1%}",
                      help="How often a face's class is the majority of its 10 nearest faces in the model's own "
                           "feature space: how well the model keeps the classes apart.")
            m2.metric(f"{KNN}-NN accuracy on this map", f"{emb.knn_2d:.1%}",
                      help="The same on the 2-D map: how much of that separation the picture keeps.")
            faces = part.images[emb.index]
            pts = pd.DataFrame({"x": emb.xy[:, 0], "y": emb.xy[:, 1], "point": np.arange(len(emb.index)),
                                "true class": [names[t] for t in emb.true],
                                "predicted class": [names[p] for p in emb.pred],
                                "right or wrong": np.where(emb.true == emb.pred, "right", "wrong"),
                                "confidence": np.asarray(emb.confidence, np.float64),  # float32 prints 0.94199997
                                "image": [face_url(f) for f in faces]})
            scale = alt.Scale(domain=names, scheme="tableau10") if colour != "right or wrong" else alt.Scale(domain=["right", "wrong"],
                                                                         range=["#59a14f", "#e15759"])
            box = alt.selection_interval(name="box")
            tap = alt.selection_point(name="tap", fields=["point"], on="click")  # a tap on a phone, a click
            dots = alt.Chart(pts).mark_circle(size=28, opacity=0.75).encode(
                x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
                color=alt.Color(f"{colour}:N", scale=scale, legend=alt.Legend(orient="bottom", columns=4)),
                tooltip=["image", "true class", "predicted class",
                         alt.Tooltip("confidence:Q", format=".1%")]).add_params(box, tap).properties(height=420)
            event = chart(dots, on_select="rerun", key=f"ex_map_{which}", width="stretch")
            ranges = (event.selection.get("box") or {}) if event else {}
            tapped = [p["point"] for p in ((event.selection.get("tap") or []) if event else []) if "point" in p]
            if tapped:  # what a hover shows with a mouse, for a finger: the face, then its nearest faces below
                k = int(tapped[0])
                st.image(faces[k], width=144, caption=f"true {names[emb.true[k]]} · predicted {names[emb.pred[k]]} "
                                                      f"({emb.confidence[k]:.0%})")
                if picked is None:
                    picked = (emb, faces, k, names)
            elif ranges.get("x") and ranges.get("y"):
                (x0, x1), (y0, y1) = ranges["x"], ranges["y"]
                inside = np.flatnonzero((pts.x >= x0) & (pts.x <= x1) & (pts.y >= y0) & (pts.y <= y1))
                st.markdown(f"**{len(inside)} selected face(s)**")
                face_gallery(faces[inside], [f"true {names[emb.true[k]]}\npredicted {names[emb.pred[k]]}"
                                             for k in inside], columns=6, limit=24)
                if len(inside) and picked is None:
                    picked = (emb, faces, int(inside[0]), names)
            else:
                st.caption("Tap or click a point to see its face and its nearest faces (a mouse shows it on hover "
                           "too); drag a box to see the faces inside it.")
    if picked is not None:
        emb, faces, k, names = picked
        st.markdown(f"**The chosen face and its {emb.near.shape[1]} nearest faces** in the model's "
                    "features (true / predicted class):")
        idx = [k, *emb.near[k]]
        face_gallery(faces[idx], [("this face: " if j == 0 else "") + f"{names[emb.true[i]]} / {names[emb.pred[i]]}"
                             for j, i in enumerate(idx)], columns=len(idx), limit=len(idx))


with tab_map:
    st.caption("Every face of a split placed by the features the model computes just before its classifier (for an "
               "ensemble, its members' features side by side). Faces the model finds alike land close together; "
               "where two classes' colours mix, the model confuses them.")
    map_section()


# ---------------------------------------------------------------------------- one face
def face_picker(prefix: str) -> np.ndarray | None:
    how = st.radio("Face", ["from the data set", "upload a photo"], horizontal=True, key=f"{prefix}_how")
    if how == "upload a photo":
        up = st.file_uploader("A photo (its first face is used)", type=list(PHOTO_TYPES), key=f"{prefix}_upload",
                              help="JPEG (also .jfif), PNG, WebP, BMP, GIF (first frame) or TIFF, as on the Predict page.")
        if up is None:
            return None
        res, _ = cached_analysis(up.name, up.getvalue(), str(ref.path), ref.stamp, "auto", "none", False, "yunet")
        if res.error or not res.faces:
            st.error(res.error or f"{up.name}: no face found; try a closer, more frontal photo.")
            return None
        return res.faces[0].crop
    ds = cached_dataset(source, ref.merge)
    c1, c2 = st.columns(2)
    split = c1.selectbox("Split", SPLITS, index=SPLITS.index("PublicTest"), key=f"{prefix}_split")
    part = ds.subset(split)
    if not len(part):
        st.warning(f"The {split} split of {source} is empty.")
        return None
    k = c2.number_input(f"Face number (0-{len(part) - 1})", 0, len(part) - 1, 0, key=f"{prefix}_index")
    st.caption(f"True class: **{ds.class_names[int(part.labels[k])]}**")
    return part.images[int(k)]


def face_and_views(prefix: str) -> tuple[np.ndarray, FaceViews] | None:
    """The face the user picked and everything the model shows of it; None (with a message) when
    there is none yet or the model cannot show it."""
    face = face_picker(prefix)
    if face is None:
        return None
    try:
        return face, cached_face_views(model, face)
    except FerError as exc:
        st.error(str(exc))
        return None


@st.fragment
def layers_section() -> None:
    picked = face_and_views("exl")
    if picked is None:
        return
    face, views = picked
    doc = views.layers
    if doc.get("note"):
        st.info(doc["note"])
    if not doc["probabilities"]:
        return
    left, right = st.columns([1, 3])
    left.image(face, caption="the face (48x48)", width=144)
    probs = pd.DataFrame({"class": classes, "score": doc["logits"], "probability": doc["probabilities"]})
    right.markdown("**The last step**: the classifier's score per class, and the softmax that turns scores into "
                   "probabilities" + (f" ({doc['model']}, the first member of the ensemble)"
                                      if doc["model"].startswith("member_") else ""))
    right.dataframe(probs.style.format({"score": "{:.2f}", "probability": "{:.1%}"}), hide_index=True)
    if doc["first_filters"]:
        st.markdown(f"**The first layer's {len(doc['first_filters'])} learned filters** (light: positive weights)")
        st.image(grid(doc["first_filters"], cols=16, cell=24))
    for layer in doc["layers"]:
        st.markdown(f"**{layer['name']}** · output {' x '.join(map(str, layer['shape']))} · its "
                    f"{len(layer['top_channels'])} most active channels (light: strong response)")
        st.image(grid([c["map"] for c in layer["top_channels"]], cols=8, cell=64))


with tab_layers:
    st.caption("One face through the network: what each block of layers responds to, from edges in the first "
               "layers to parts of the face deeper in.")
    layers_section()


@st.fragment
def why_section() -> None:
    picked = face_and_views("exw")
    if picked is None:
        return
    face, views = picked
    label = classes[int(np.argmax(views.proba))]
    c1, c2, c3 = st.columns(3)
    c1.image(face, caption=f"the face: {label} ({np.max(views.proba):.0%})", width=160)
    for col, (name, (heat, note)) in zip((c2, c3), (("Grad-CAM", views.gradcam), ("Occlusion", views.occlusion))):
        if heat is not None:
            col.image(overlay(face, heat), caption=f"{name}: what raised '{label}'" if name == "Grad-CAM" else
                      f"{name}: where covering the face costs '{label}' most", width=160)
        else:
            col.caption(f"{name}: {note}")
    st.markdown("**What if**: the same face changed, and what the model then says")
    edits = st.multiselect("Changes", EDITS, default=list(EDITS[:5]), key="exw_edits")
    rows = [{"face": name, "class": c, "probability": float(p)}
            for name in ("as it is", *edits) for c, p in zip(classes, views.what_if[name])]
    bars = alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("face:N", sort=["as it is", *edits], title=None), color=alt.Color("class:N", scale=COLOURS),
        tooltip=["face", "class", alt.Tooltip("probability:Q", format=".1%")]).properties(height=40 + 28 * (1 + len(edits)))
    chart(bars, width="stretch")
    winners = [f"{name}: **{classes[int(np.argmax(views.what_if[name]))]}**" for name in edits]
    if winners:
        st.caption(" · ".join(winners))


with tab_why:
    st.caption("Two explanations of one answer. Grad-CAM follows the gradient of the class's score back to the "
               "last convolutions; occlusion slides a grey square over the face and measures the drop in the "
               "class's probability. Where they disagree, trust neither alone.")
    why_section()


# ----------------------------------------------------------------------------- dynamics
@st.fragment
def dynamics_section() -> None:
    runs = runs_with_dynamics()
    if not runs:
        st.info("No run has recorded its training dynamics yet: runs record them from now on (train one on the "
                "Train page, even 5 epochs of the tiny preset on the demo set).")
        return
    run = st.selectbox("Run", runs, format_func=lambda p: p.name, key="ex_dyn_run")
    try:
        found = cached_cartography(str(run), dynamics_stamp(run))
    except FerError as exc:
        st.error(str(exc))
        return
    if found is None:
        st.info(f"{run.name} has no training dynamics.")
        return
    show_cartography(found, key="ex_dyn")


with tab_dyn:
    st.caption("Dataset cartography (Swayamdipta et al., 2020): after every epoch a run records the probability "
               "its model gives the true class of 2,000 fixed Training faces. Each face's mean and spread over "
               "the epochs say whether the network learned it easily, hesitated, or never learned it.")
    dynamics_section()
