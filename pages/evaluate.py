"""Evaluate page: confusion matrix, classification report, the images behind every number."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from fer_core.config import SPLITS
from fer_core.inference.evaluate import VIEWS, disagreements, select_predictions
from fer_core.inference.loader import data_mismatch, resolve_model, top_k
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from ui import (active_source, cached_dataset, cached_evaluation, chart, model_choices, model_select, source_choices,
                stop_on_error, use_app_navigation)

use_app_navigation()
st.title("Evaluate")
PER_PAGE = 24
GALLERY_COLUMNS = 8

choices = model_choices()
if not choices:
    st.info("No model to evaluate yet: train one on the Train page.")
    st.stop()
with st.sidebar:
    st.header("What to evaluate")
    model = model_select("Model", choices, "ev_model")
    source = st.selectbox("Data source", source_choices(), accept_new_options=True, key="ev_source",
                          index=source_choices().index(active_source()))
    split = st.selectbox("Split", [*SPLITS, "all"], index=SPLITS.index("PrivateTest"), key="ev_split")
    tta = st.selectbox("Test-time augmentation", TTA_MODES, index=TTA_MODES.index(DEFAULT_TTA), key="ev_tta",
                       help="The default is the one the model card reports and every other surface uses.")
    other = st.selectbox("Compare with (optional)", ["", *[k for k in choices if k != model]],
                         format_func=lambda k: choices.get(k, "—"), key="ev_other")

with stop_on_error():
    res, merge = cached_evaluation(model, source, split, tta)
    ds = cached_dataset(source, merge)
m = res.metrics
classes = list(res.classes)

cols = st.container(key="metric_row_evaluate").columns(4)  # side by side, wrapped on a phone
cols[0].metric("Accuracy", f"{m['accuracy']:.2%}")
cols[1].metric("Macro F1", f"{m['macro_f1']:.3f}")
cols[2].metric("Weighted F1", f"{m['weighted_f1']:.3f}")
cols[3].metric("Images", f"{m['num_images']:,}")
st.caption(f"{choices[model]} on {source} ({split}, TTA {tta})")

# ----------------------------------------------------------------- confusion matrix
cm = np.asarray(m["confusion_matrix"])
rows = cm.sum(axis=1, keepdims=True)
cells = pd.DataFrame([{"true": classes[i], "predicted": classes[j], "count": int(cm[i, j]),
                       "percent": float(cm[i, j] / rows[i, 0] * 100) if rows[i, 0] else 0.0}
                      for i in range(len(classes)) for j in range(len(classes))])
left, right = st.container(key="wide_pair_matrix").columns([3, 2])  # side by side, stacked when narrow
with left:
    st.subheader("Confusion matrix")
    pick = alt.selection_point(fields=["true", "predicted"], name="cell")
    base = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=classes, title="predicted"),
                                   y=alt.Y("true:N", sort=classes, title="true"))
    heat = base.mark_rect().encode(
        color=alt.Color("percent:Q", title="% of row", scale=alt.Scale(scheme="blues", domain=[0, 100])),
        tooltip=["true", "predicted", "count", alt.Tooltip("percent:Q", format=".1f")],
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.5))).add_params(pick)
    # the share of the row, short enough for seven columns on a phone; empty cells stay blank; counts on hover
    text = base.mark_text(baseline="middle").encode(
        text=alt.Text("label:N"), color=alt.condition("datum.percent > 50", alt.value("white"), alt.value("black"))
    ).transform_calculate(label="datum.count > 0 ? format(datum.percent, '.0f') + '%' : ''")
    event = chart((heat + text).properties(height=380), on_select="rerun", key="ev_matrix",
                            width="stretch")
    picked = (event or {}).get("selection", {}).get("cell") or []
    st.caption("Rows are true classes and columns predicted ones; each cell shows the share of its row (its count "
               "on hover). Click or tap a cell (or pick a pair below) to see its images.")
with right:
    st.subheader("Classification report")
    report = pd.DataFrame(m["per_class"]).T
    report.loc["macro avg"] = [m["macro_precision"], m["macro_recall"], m["macro_f1"], m["num_images"]]
    report.loc["weighted avg"] = [m["weighted_precision"], m["weighted_recall"], m["weighted_f1"], m["num_images"]]
    report["support"] = report["support"].astype(int)
    st.dataframe(report.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}), width="stretch")
    bars = pd.DataFrame([{"class": c, "measure": k, "value": v[k]} for c, v in m["per_class"].items()
                         for k in ("precision", "recall")])
    chart(alt.Chart(bars).mark_bar().encode(
        x=alt.X("class:N", sort=classes, title=None), xOffset="measure:N", y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
        color="measure:N", tooltip=["class", "measure", alt.Tooltip("value:Q", format=".3f")]).properties(height=220),
        width="stretch")


def gallery(positions: np.ndarray, key: str, result=None, second=None, names: tuple[str, str] = ("", "")) -> None:
    """A page of faces with true label, prediction and top-3 probabilities; with ``second`` (another
    model's result on the same faces), each model's prediction, named by ``names``."""
    result = result or res
    if len(positions) == 0:
        st.info("No image matches.")
        return
    pages = (len(positions) - 1) // PER_PAGE + 1
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_page") if pages > 1 else 1
    shown = positions[(page - 1) * PER_PAGE:page * PER_PAGE]
    tops = top_k(result.proba[shown], result.classes)
    tops2 = top_k(second.proba[shown], second.classes) if second is not None else None
    for row in range(0, len(shown), GALLERY_COLUMNS):
        with st.container(key=f"grid_row_{key}_{row}"):
            for n, (col, p, top) in enumerate(zip(st.columns(GALLERY_COLUMNS), shown[row:row + GALLERY_COLUMNS],
                                                  tops[row:row + GALLERY_COLUMNS])):
                col.image(ds.images[result.index[p]], width=110)
                (first, p1), rest = top[0], top[1:]
                if tops2 is None:  # one fact per line: the true class, the prediction, the runners-up
                    col.caption(f"true **{result.classes[result.y_true[p]]}**  \npredicted **{first}** {p1:.0%}  \n"
                                + " · ".join(f"{c} {v:.0%}" for c, v in rest))
                else:  # two models: the true class, then what each of them said
                    other_first, other_p = tops2[row + n][0]
                    col.caption(f"true **{result.classes[result.y_true[p]]}**  \n{names[0]}: **{first}** {p1:.0%}  \n"
                                f"{names[1]}: **{other_first}** {other_p:.0%}")
    st.caption(f"{len(positions):,} images; showing {len(shown)}.")


# -------------------------------------------------------------------------- the cell
st.subheader("Images behind a cell")
c1, c2 = st.columns(2)
if picked:
    st.session_state["ev_cell_true"], st.session_state["ev_cell_pred"] = picked[0]["true"], picked[0]["predicted"]
for name, first in (("ev_cell_true", classes[0]), ("ev_cell_pred", classes[1 % len(classes)])):
    if st.session_state.get(name) not in classes:  # the default goes through the state only (no index=)
        st.session_state[name] = first
cell_true = c1.selectbox("True class", classes, key="ev_cell_true")
cell_pred = c2.selectbox("Predicted class", classes, key="ev_cell_pred")
gallery(select_predictions(res, true=[cell_true], predicted=[cell_pred]), "cell")

# --------------------------------------------------------------------- all predictions
@st.fragment
def all_predictions() -> None:
    """The filtered gallery: its filters rerun only this part of the page."""
    st.subheader("Per-image predictions")
    f1, f2, f3, f4 = st.columns(4)
    view = f1.selectbox("View", VIEWS, key="ev_view")
    true = f2.multiselect("True class", classes, key="ev_true")
    pred = f3.multiselect("Predicted class", classes, key="ev_pred")
    outcome = f4.radio("Outcome", ["all", "correct", "wrong"], horizontal=True, key="ev_outcome",
                       disabled=view != "all")
    g1, g2 = st.columns(2)
    low, high = g1.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.05, key="ev_conf")
    order = g2.radio("Sort by confidence", ["highest first", "lowest first"], horizontal=True, key="ev_sort",
                     disabled=view != "all")
    chosen = select_predictions(res, true=true, predicted=pred, correct={"all": None, "correct": True, "wrong": False}[outcome],
                                confidence=(low, high), view=view, descending=order == "highest first")
    gallery(chosen, "all")
    table = pd.DataFrame(res.predictions_table(ds.origins))
    st.download_button("Download the predictions (CSV)", table.to_csv(index=False).encode(),
                       file_name=f"predictions-{model.replace('/', '_')}-{split}.csv", mime="text/csv")


all_predictions()

# ------------------------------------------------------------------------ comparison
if other:
    st.subheader("Side by side")
    with stop_on_error():
        res2, _ = cached_evaluation(other, source, split, tta)
        differ = disagreements(res, res2)
    mismatch = data_mismatch(resolve_model(model), resolve_model(other))
    if mismatch:
        st.warning(mismatch)
    a, b = st.columns(2)
    for col, r, key in ((a, res, model), (b, res2, other)):
        col.metric(choices[key], f"{r.metrics['accuracy']:.2%}")
    f1s = pd.DataFrame({f"F1, {choices[model]}": {c: v["f1"] for c, v in res.metrics["per_class"].items()},
                        f"F1, {choices[other]}": {c: v["f1"] for c, v in res2.metrics["per_class"].items()}})
    st.markdown("**F1 per class** (the harmonic mean of precision and recall)")
    st.dataframe(f1s.style.format("{:.3f}"), width="stretch")
    right_a = int(np.sum(res.y_pred[differ] == res.y_true[differ]))
    right_b = int(np.sum(res2.y_pred[differ] == res2.y_true[differ]))
    st.write(f"They disagree on **{len(differ):,}** images: the first (A) is right on {right_a:,}, "
             f"the second (B) on {right_b:,}. Each caption shows what both said.")
    st.caption(f"A: {choices[model]} · B: {choices[other]}")
    gallery(differ, "differ", second=res2, names=("A", "B"))
