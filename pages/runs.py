"""Runs page: every run directory, live loss/accuracy curves, comparison, the study table."""

import altair as alt
import pandas as pd
import streamlit as st

from fer_core import jobs
from fer_core.errors import FerError
from fer_core.runs import STUDY_COLUMNS, curves, list_runs, reference_rows, shipped_histories, summarize
from ui import link_to, use_app_navigation

use_app_navigation()
st.title("Runs")


def job_statuses() -> dict[str, str]:
    """Run directory -> status of the job that writes it (jobs know better than run.json)."""
    try:
        with jobs.open_store() as store:
            return {job.run_dir: job.status.value for job in store.list()}
    except FerError as exc:
        st.warning(str(exc))
        return {}


#: The runs table's columns, most telling first (the run's name stays pinned when it scrolls sideways).
RUN_COLUMNS = ["run", "status", "note", "best val_acc", "best epoch", "epochs", "arch", "data", "params", "minutes",
               "recalibrated val_acc", "optimizer", "lr", "schedule", "batch", "job"]


runs = list_runs()
if not runs:
    st.info("No runs yet. Train a model on the Train page (or with `python -m fer_core train`).")
    st.stop()
statuses = job_statuses()
table = pd.DataFrame([r.row() for r in runs])
table["status"] = [statuses.get(str(r.path), r.status) for r in runs]

st.subheader(f"All runs ({len(runs)})")
st.dataframe(table, hide_index=True, width="stretch", column_order=RUN_COLUMNS,
             column_config={"run": st.column_config.TextColumn(pinned=True),
                            "note": st.column_config.TextColumn(width="medium"),
                            "job": st.column_config.NumberColumn(format="%d"),
                            "best val_acc": st.column_config.NumberColumn(format="%.4f"),
                            "recalibrated val_acc": st.column_config.NumberColumn(
                                format="%.4f", help="the selected checkpoint once its batch-norm statistics were "
                                "re-estimated on clean Training faces (at the end of training, or by "
                                "`python -m fer_core recalibrate`)"),
                            "params": st.column_config.NumberColumn(format="localized")})
for run in runs:
    if run.error:
        st.warning(f"**{run.name}** is broken: {run.error}")

readable = [r.name for r in runs if not r.error]
linked = st.query_params.get("run")  # a job's "curves" link names its run
chosen = st.multiselect("Runs to show and compare", readable, key="runs_chosen",
                        default=[linked] if linked in readable else readable[:1])
by_name = {r.name: r for r in runs}
for name in chosen:
    run = by_name[name]
    job, note = run.info.get("job"), run.info.get("note")
    if job or note:
        left, right = st.columns([4, 1])
        left.markdown(f"**{name}**" + (f": {note}" if note else ""))
        if job:
            with right:
                link_to("pages/train.py", f"Job {job} on the Train page", job=job)
live = any(statuses.get(str(by_name[n].path)) in ("running", "queued") for n in chosen)

curves_tab, study_tab, shipped_tab, download_tab = st.tabs(["Curves", "Study table", "How the shipped model learned",
                                                             "Downloads"])


def curve_chart(part: pd.DataFrame, metric: str) -> alt.LayerChart:
    """Training (solid) against validation (dashed) per run; the legend draws the two dashes
    (points on the lines would turn its symbols into two identical dots, so they are a layer
    of their own, outside the legend)."""
    base = alt.Chart(part).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="run"),
        tooltip=["run", "split", "epoch", alt.Tooltip("value:Q", format=".4f")])
    lines = base.mark_line().encode(strokeDash=alt.StrokeDash(
        "split:N", title="split", sort=["training", "validation"],
        legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolSize=400, symbolStrokeColor="#555")))
    points = base.mark_point(filled=True, size=25).encode(detail="split:N")
    return (lines + points).properties(title=metric.capitalize(), height=280)


@st.fragment(run_every=3.0 if live else None)
def draw_curves(names: list[str]) -> None:
    """Loss and accuracy per epoch, training against validation; re-read while jobs run."""
    fresh = [summarize(by_name[n].path) for n in names]
    frame = pd.DataFrame(curves(fresh))
    if frame.empty:
        st.info("No finished epoch yet." if names else "Choose one or more runs above.")
        return
    for metric in ("loss", "accuracy"):
        st.altair_chart(curve_chart(frame[frame["metric"] == metric], metric), width="stretch")
    best = pd.DataFrame([{"run": r.name, "epochs": len(r.metrics), "best val_accuracy": r.best.get("val_accuracy"),
                          "at epoch": r.best.get("epoch")} for r in fresh])
    st.dataframe(best, hide_index=True)


with curves_tab:
    draw_curves(chosen)

with study_tab:
    st.caption("The original study's experiment table: architecture notation, optimizer, learning rate, "
               "decay (Keras 2's per-iteration decay), batch size, parameters and the best validation accuracy.")
    scope = st.radio("Rows", ["chosen runs", "all runs"], horizontal=True, key="study_scope")
    rows = reference_rows() + [r.study_row() for r in runs if not r.error and (scope == "all runs" or r.name in chosen)]
    st.dataframe(pd.DataFrame(rows, columns=STUDY_COLUMNS), hide_index=True, width="stretch",
                 column_config={"run": st.column_config.TextColumn(pinned=True),
                                "val accuracy": st.column_config.NumberColumn(
                                    format="%.4f", help="best PublicTest accuracy during training (no TTA); the "
                                    "shipped model's with its default TTA"),
                                "test accuracy": st.column_config.NumberColumn(
                                    format="%.4f", help="PrivateTest, reported for the reference points"),
                                "parameters": st.column_config.NumberColumn(format="localized")})
    st.caption("Reference points: Pramerdorfer & Kampel, *Facial Expression Recognition using Convolutional Neural "
               "Networks: State of the Art* (2016), single VGG; Tang, *Deep Learning using Linear Support Vector "
               "Machines* (2013), winner of the Kaggle FER2013 challenge; FER Studio's shipped model as measured "
               "in its model card.")

with shipped_tab:
    history = shipped_histories()
    if not history:
        st.info("The shipped model came without its training history.")
    else:
        st.caption("The per-epoch history of each training run behind the shipped model (shipped with it in "
                   "`fer_core/default_model/history/`); its model card says how the runs were combined.")
        frame = pd.DataFrame(curves(history))
        for metric in ("loss", "accuracy"):
            st.altair_chart(curve_chart(frame[frame["metric"] == metric], metric), width="stretch")

with download_tab:
    if not chosen:
        st.info("Choose a run above.")
    for name in chosen:
        run = by_name[name]
        cols = st.columns(2)
        metrics_csv = pd.DataFrame(run.metrics).to_csv(index=False).encode()
        cols[0].download_button(f"{name}: metrics (CSV)", metrics_csv, file_name=f"{name}-metrics.csv",
                                mime="text/csv", key=f"dl_metrics_{name}", disabled=not run.metrics)
        model = run.model_file
        if model is None:
            cols[1].caption(f"{name}: no model file yet")
        else:
            cols[1].download_button(f"{name}: model ({model.name}, {model.stat().st_size / 1e6:.1f} MB)",
                                    model.read_bytes, file_name=f"{name}-{model.name}",
                                    mime="application/octet-stream", key=f"dl_model_{name}")
