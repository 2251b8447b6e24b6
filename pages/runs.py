"""Runs page: every run directory, live loss/accuracy curves, comparison, the study table."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import time
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from fer_core import jobs
from fer_core.config import read_only
from fer_core.errors import FerError
from fer_core.shipping.export import FORMATS, QUANTIZE, missing_runtime
from fer_core.inference.loader import DEFAULT_MODEL, FAST_MODEL, default_model, shipped_folder, shipped_model
from fer_core.training.catalog import GROUP_BY, STUDY_COLUMNS, config_table, curves, group_curves, group_table, list_runs, lr_curve, metric_summary, reference_rows, shipped_histories, shipped_members, summarize
from fer_core.training.dynamics import dynamics_stamp
from fer_core.runs.status import shown_status
from ui import cached_cartography, cached_export, chart, link_to, show_cartography, use_app_navigation
from ui import scheduling_loop

use_app_navigation()
scheduling_loop()
st.title("Runs")


def job_statuses() -> dict[str, tuple[int, jobs.JobStatus]]:
    """Run directory -> (job id, status) of the job that writes it (a read: the server's loop schedules)."""
    try:
        with jobs.open_store() as store:
            return {job.run_dir: (job.id, job.status) for job in store.list()}
    except FerError as exc:
        st.warning(str(exc))
        return {}


def status_of(run, statuses: dict) -> str:
    """What the page shows as a run's status: its job's, when it has one (see shown_status)."""
    return shown_status(run.status, statuses.get(str(run.path), (None, None))[1])


#: The runs table's columns, most telling first (the run's name stays pinned when it scrolls sideways).
RUN_COLUMNS = ["run", "status", "note", "best val_acc", "best epoch", "epochs", "arch", "data", "params", "minutes",
               "recalibrated val_acc", "optimizer", "lr", "schedule", "batch", "job"]
#: Seconds between two looks at the runs and jobs: a new, changed or finished one redraws the page.
WATCH_EVERY = 3.0


def seen(runs: list, statuses: dict) -> tuple:
    """What the page shows of the runs and jobs: every run with its status and epochs done, and
    the jobs that have no run folder yet."""
    paths = {str(r.path) for r in runs}
    return (tuple((r.name, status_of(r, statuses), len(r.metrics)) for r in runs),
            tuple(sorted((job, shown_status(None, status)) for d, (job, status) in statuses.items() if d not in paths)))


@st.cache_data(ttl=WATCH_EVERY - 1, show_spinner=False)
def look() -> tuple:
    """:func:`seen` now: looked at once every few seconds for all the server's viewers together."""
    return seen(list_runs(), job_statuses())


def watch(shown: tuple) -> None:
    """Look at the runs and jobs every few seconds; when anything the page shows has changed (a job
    submitted, an epoch done, a status), redraw the whole page: nobody has to reload."""
    if look() != shown:
        st.rerun()


#: The curves' x axes: the column of curves()/lr_curve() rows, and its title.
X_AXES = {"epoch": "epoch", "wall-clock time": "minutes"}
X_TITLES = {"epoch": "epoch", "minutes": "minutes of training"}


def x_encoding(x: str) -> alt.X:
    return alt.X(f"{x}:Q", title=X_TITLES[x], axis=alt.Axis(tickMinStep=1) if x == "epoch" else alt.Axis())


def curve_chart(part: pd.DataFrame, metric: str, x: str = "epoch", smoothed: bool = False) -> alt.LayerChart:
    """Training (solid) against validation (dashed) per run; the legend draws the two dashes
    (points on the lines would turn its symbols into two identical dots, so they are a layer
    of their own, outside the legend). Smoothed curves keep the raw values as faint lines."""
    base = alt.Chart(part).encode(
        x=x_encoding(x), color=run_colour(),
        tooltip=["run", "split", "epoch", alt.Tooltip("minutes:Q", format=".1f"), alt.Tooltip("raw:Q", format=".4f")]
        + ([alt.Tooltip("value:Q", title="smoothed", format=".4f")] if smoothed else []))
    dash = alt.StrokeDash("split:N", title="split", sort=["training", "validation"],
                          legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolSize=400,
                                            symbolStrokeColor="#555"))
    y = alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False))
    lines = base.mark_line().encode(y=y, strokeDash=dash)
    points = base.mark_point(filled=True, size=25).encode(y=y, detail="split:N")
    layers = [lines, points]
    if smoothed:  # the same dash encoding as the lines: one legend, no "conflicting legend" (which hid it)
        layers.insert(0, base.mark_line(opacity=0.25).encode(y=alt.Y("raw:Q"), detail="split:N", strokeDash=dash))
    return alt.layer(*layers).properties(title=metric.capitalize(), height=280)


def run_colour() -> alt.Color:
    """One strong colour per run (Tableau 10: the theme's second colour was a pale blue)."""
    return alt.Color("run:N", title="run", scale=alt.Scale(scheme="tableau10"))


def lr_chart(frame: pd.DataFrame, x: str) -> alt.Chart:
    return alt.Chart(frame).mark_line(point=True).encode(
        x=x_encoding(x), y=alt.Y("lr:Q", title="learning rate", scale=alt.Scale(type="log")),
        color=run_colour(),
        tooltip=["run", "epoch", alt.Tooltip("lr:Q", format=".2e")]).properties(title="Learning rate", height=220)


def shipped_history() -> None:
    """The per-epoch history of every member of a shipped model, with or without runs of one's own."""
    shown = DEFAULT_MODEL
    if shipped_model(FAST_MODEL) is not None:
        shown = st.radio("Shipped model", (DEFAULT_MODEL, FAST_MODEL), horizontal=True, key="runs_shipped",
                         format_func={DEFAULT_MODEL: "default (the most accurate)",
                                      FAST_MODEL: "fast (for live views)"}.get)
    folder = shipped_folder(shown)
    history = shipped_histories(folder)
    members = shipped_members(folder)
    if history:
        st.caption(f"The per-epoch history of each training run behind the shipped {shown} model (shipped with it "
                   f"in `fer_core/shipping/{folder.name}/history/`); its model card says how the runs were "
                   "combined.")
        frame = pd.DataFrame(curves(history))
        for metric in ("loss", "accuracy"):
            chart(curve_chart(frame[frame["metric"] == metric], metric), width="stretch")
    if members:
        st.markdown(f"**Every member of the shipped {shown} model**")
        st.dataframe(pd.DataFrame(members), hide_index=True, width="stretch",
                     column_config={"PublicTest": st.column_config.NumberColumn(format="%.4f"),
                                    "minutes": st.column_config.NumberColumn(format="%.0f")})
        lost = [m["member"] for m in members if not m["history"]]
        if lost:
            st.caption(f"No per-epoch history was kept for {', '.join(lost)} when it was trained (its runs are "
                       "gone): the table gives its stages, epochs and training time from the release's record.")
    elif not history:
        st.info(f"The shipped {shown} model came without its training history.")


runs = list_runs()
statuses = job_statuses()
st.fragment(run_every=WATCH_EVERY)(watch)(look())
table = pd.DataFrame([r.row() for r in runs])
if runs:
    table["status"] = [status_of(r, statuses) for r in runs]
known = {str(r.path) for r in runs}
waiting = [{"run": Path(d).name, "status": shown_status(None, status), "job": job}
           for d, (job, status) in statuses.items() if d not in known and status in jobs.ACTIVE]
if waiting:  # a job whose run folder is not made yet (it waits for its turn): listed, without figures
    table = pd.concat([pd.DataFrame(waiting), table], ignore_index=True)
if table.empty:
    st.info("No runs yet. Train a model on the Train page (or with `python -m fer_core train`); it appears here by "
            "itself.")
else:
    st.subheader(f"All runs ({len(table)})")
    counts = table["status"].value_counts()
    st.caption(" · ".join(f"{n} {status}" for status, n in counts.items()) + " (follows the jobs by itself)")
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
if not runs:  # the shipped model's history still tells how a network learns
    st.subheader("How the shipped model learned")
    shipped_history()
    st.stop()

readable = [r.name for r in runs if not r.error]
linked = st.query_params.get("run")  # a job's "curves" link names its run
if linked in readable and st.session_state.get("runs_linked") != linked:
    # a link followed within the session: its run is chosen, whatever was chosen on an earlier visit
    st.session_state["runs_linked"] = linked
    st.session_state["runs_chosen"] = [linked]
elif [n for n in st.session_state.get("runs_chosen", []) if n not in readable]:
    st.session_state["runs_chosen"] = [n for n in st.session_state["runs_chosen"] if n in readable]
if "runs_chosen" not in st.session_state:
    st.session_state["runs_chosen"] = [linked] if linked in readable else readable[:1]
elif linked and linked not in readable:
    st.info(f"Run {linked} has no finished configuration yet (its job may still be queued); it appears here as "
            "soon as it starts.")
chosen = st.multiselect("Runs to show and compare", readable, key="runs_chosen")
by_name = {r.name: r for r in runs}
for name in chosen:
    run = by_name[name]
    job, note = run.info.get("job"), run.info.get("note")
    if job or note:  # the name and note, then the job's link on a line of its own (never cut short)
        st.markdown(f"**{name}**" + (f": {note}" if note else ""))
        if job:
            link_to("pages/train.py", f"Job {job} on the Train page", job=job)
live = any(statuses.get(str(by_name[n].path), (None, None))[1] in jobs.ACTIVE for n in chosen)

curves_tab, groups_tab, study_tab, shipped_tab, download_tab = st.tabs(
    ["Curves", "Groups", "Study table", "How the shipped model learned", "Downloads"])

def curve_controls(key: str) -> tuple[str, float]:
    """The x axis and the smoothing weight, as trackers offer them."""
    left, right = st.columns([1, 2])
    x = X_AXES[left.radio("x axis", list(X_AXES), horizontal=True, key=f"{key}_x")]
    smoothing = right.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}_smooth",
                             help="an exponential moving average, as in TensorBoard: 0 shows the values as they "
                                  "are; the raw curve stays as a faint line")
    return x, smoothing


@st.fragment(run_every=3.0 if live else None)
def draw_curves(names: list[str]) -> None:
    """Loss, accuracy and learning rate per epoch (or minute), training against validation;
    best and last values; re-read while jobs run."""
    x, smoothing = curve_controls("curves")
    fresh = [summarize(by_name[n].path) for n in names]
    frame = pd.DataFrame(curves(fresh, smoothing))
    if frame.empty:
        st.info("No finished epoch yet." if names else "Choose one or more runs above.")
        return
    if x == "minutes" and frame["minutes"].isna().any():
        st.caption("Some epochs have no recorded duration; they are left out of the time axis.")
    for metric in ("loss", "accuracy"):
        chart(curve_chart(frame[frame["metric"] == metric], metric, x, smoothing > 0), width="stretch")
    lr = pd.DataFrame(lr_curve(fresh))
    if not lr.empty:
        chart(lr_chart(lr, x), width="stretch")
    st.markdown("**Best and last values**")
    st.dataframe(pd.DataFrame(metric_summary(fresh)), hide_index=True, width="stretch",
                 column_config={"best": st.column_config.NumberColumn(format="%.4f"),
                                "last": st.column_config.NumberColumn(format="%.4f")})
    st.markdown("**Configuration**")
    only = st.toggle("Only the differences", value=True, key="curves_diff",
                     help="with two runs or more, hide the settings they all share")
    table = pd.DataFrame(config_table(fresh, only_differences=only))
    if table.empty:
        st.caption("The chosen runs share every setting." if only else "No readable configuration.")
    else:
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"setting": st.column_config.TextColumn(pinned=True)})


with curves_tab:
    draw_curves(chosen)
    for name in chosen:  # runs that recorded their training dynamics (see the Explore page)
        stamp = dynamics_stamp(by_name[name].path)
        if stamp:
            if st.toggle(f"How {name} learned each face (training dynamics)", key=f"runs_dyn_on_{name}"):
                try:
                    found = cached_cartography(str(by_name[name].path), stamp)
                except FerError as exc:
                    st.error(str(exc))
                else:
                    if found is not None:
                        show_cartography(found, key=f"runs_dyn_{name}")


def group_chart(frame: pd.DataFrame, metric: str) -> alt.LayerChart:
    """Per group: the mean over its runs (line) and the lowest to highest run (band)."""
    base = alt.Chart(frame).encode(x=x_encoding("epoch"), color=alt.Color("group:N", title="group",
                                                                          scale=alt.Scale(scheme="tableau10")))
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("low:Q", title=metric, scale=alt.Scale(zero=False)),
                                               y2="high:Q")
    line = base.mark_line(point=True).encode(
        y="mean:Q", tooltip=["group", "epoch", "runs", alt.Tooltip("mean:Q", format=".4f"),
                             alt.Tooltip("low:Q", format=".4f"), alt.Tooltip("high:Q", format=".4f")])
    return (band + line).properties(title=f"Validation {metric}: mean and range over each group's runs", height=260)


@st.fragment
def draw_groups() -> None:
    """Runs grouped by sweep, architecture or tag: each group's mean and spread."""
    by = st.radio("Group by", GROUP_BY, horizontal=True, key="groups_by",
                  help="tags are given when a job is submitted (the Train form, or `jobs submit --tag`)")
    scope = st.radio("Runs", ["all runs", "chosen runs"], horizontal=True, key="groups_scope")
    members = [r for r in runs if not r.error and (scope == "all runs" or r.name in chosen)]
    rows = group_table(members, by)
    if not rows:
        st.info("No runs to group.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"group": st.column_config.TextColumn(pinned=True),
                                **{c: st.column_config.NumberColumn(format="%.4f")
                                   for c in ("best val_acc mean", "± std", "min", "max")},
                                "± std": st.column_config.NumberColumn(
                                    format="%.4f", help="standard deviation of the runs' best validation accuracy")})
    frame = pd.DataFrame(group_curves(members, by))
    if not frame.empty:
        val = frame[frame["split"] == "validation"]
        for metric in ("accuracy", "loss"):
            chart(group_chart(val[val["metric"] == metric], metric), width="stretch")


with groups_tab:
    draw_groups()

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
    shipped_history()

EXPORT_LABELS = {"onnx": "ONNX", "tflite": "TFLite", "saved_model": "TensorFlow SavedModel"}


@st.fragment
def export_panel(spec: str, label: str, key: str) -> None:
    """Export a model in a format (and quantization), then a button to download the zip. Not on a
    read-only server: an export takes a core for a minute, and its students share the lecturer's."""
    if read_only():
        st.caption(f"Exports of {label} are made on the lecturer's full server (or with `python -m fer_core "
                   "export`): a read-only server offers none, so no student's click takes the class's CPU.")
        return
    fmt_col, quant_col, go_col = st.columns([2, 2, 1], vertical_alignment="bottom")
    fmt = fmt_col.selectbox(f"Export {label} as", FORMATS, format_func=EXPORT_LABELS.get, key=f"{key}_fmt")
    quantize = quant_col.selectbox("Quantization", QUANTIZE if fmt != "saved_model" else ("none",),
                                   key=f"{key}_quant_{fmt}",
                                   help="dynamic: int8 weights (about 4x smaller); float16: half-float weights")
    problem = missing_runtime(fmt)
    if problem:
        st.warning(problem)
        return
    if go_col.button("Export", key=f"{key}_go"):
        st.session_state[f"{key}_ready"] = (fmt, quantize)
    if st.session_state.get(f"{key}_ready") != (fmt, quantize):
        st.caption("Takes a minute or two on a busy server (it waits its turn behind other analyses; each step is "
                   "shown as it starts). The export takes uint8 faces (N, 48, 48, 1) named `faces` and returns "
                   "`probabilities`; `classes.json` and `export.json` come with it.")
        return
    steps = st.status(f"Exporting {label} as {EXPORT_LABELS[fmt]}…")  # each step said as it starts, with its time
    started = time.monotonic()
    try:
        name, data = cached_export(spec, fmt, quantize,
                                   log=lambda line: steps.write(f"{time.monotonic() - started:4.0f} s · {line}"))
    except FerError as exc:
        steps.update(state="error")
        st.error(str(exc))
        return
    steps.update(label=f"Exported {label} as {EXPORT_LABELS[fmt]}", state="complete", expanded=False)
    st.download_button(f"Download {name} ({len(data) / 1e6:.1f} MB)", data, file_name=name, mime="application/zip",
                       key=f"{key}_dl")


with download_tab:
    if default_model() is not None:
        st.markdown("**The shipped model**")
        export_panel(DEFAULT_MODEL, "the shipped model", "export_default")
    if shipped_model(FAST_MODEL) is not None:
        st.markdown("**The shipped fast model** (for live views and small devices)")
        export_panel(FAST_MODEL, "the shipped fast model", "export_fast")
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
            export_panel(str(run.path), name, f"export_{name}")
