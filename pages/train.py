"""Train page: a training form with the study's presets, and the live list of background jobs."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import json
import os

import streamlit as st

from fer_core import jobs
from fer_core.config import load_settings, read_only
from fer_core.device import configured_backend, device_line, installed_backends
from fer_core.errors import ConfigError, FerError
from fer_core.fmt import fmt_duration, fmt_seconds
from fer_core.models.build import get_spec, model_names
from fer_core.models.notation import count_notation_params
from fer_core.runs.rundir import read_info, read_log
from fer_core.runs.status import shown_status
from fer_core.training.trainer import estimate_epoch
from fer_core.runs.trainconfig import CLASS_WEIGHTS, OPTIMIZERS, SCHEDULES, TrainConfig
from fer_core.training.validation import check_world, config_notes
from ui import (active_source, cached_dataset, link_to, model_table, param_count, source_choices,
                use_app_navigation)
from ui import scheduling_loop

use_app_navigation()
scheduling_loop()
st.title("Train")
NOTATION = "Layer notation…"
KEY = "tr_"  # prefix of every form widget's key: the widget of field f is KEY + f
READ_ONLY = read_only()


# ------------------------------------------------------------------- the job list
def job_actions(store: jobs.JobStore, job: jobs.Job) -> None:
    if READ_ONLY:  # a read-only server shows jobs, never changes them
        return
    cols = st.columns(4)
    if job.status in jobs.ACTIVE:
        if cols[0].button("Cancel", key=f"cancel{job.id}", disabled=job.cancel_requested):
            store.cancel(job.id)
            jobs.schedule(store)  # a change schedules (the look that listed the job did not)
            st.rerun(scope="fragment")
    if job.status in jobs.RESUMABLE:
        if cols[1].button("Resume", key=f"resume{job.id}"):
            try:  # a resumed job joins the queue again: the queue's total applies
                store.resume(job.id, max_waiting=jobs.Limits.for_server().queued)
            except FerError as exc:
                st.toast(str(exc))
                return
            jobs.schedule(store)
            st.rerun(scope="fragment")
    if job.status != jobs.JobStatus.RUNNING:
        if st.session_state.get("tr_confirm") == job.id:
            cols[2].warning("Delete this job and its run directory?")
            if cols[2].button("Yes, delete", key=f"yes{job.id}", type="primary"):
                kept = store.delete(job.id)
                if kept:
                    st.toast(f"Kept {job.run_dir}: it holds files FER Studio did not write ({', '.join(kept[:3])}).")
                st.session_state.pop("tr_confirm")
                st.rerun(scope="fragment")
            if cols[3].button("Keep it", key=f"no{job.id}"):
                st.session_state.pop("tr_confirm")
                st.rerun(scope="fragment")
        elif cols[2].button("Delete", key=f"delete{job.id}"):
            st.session_state["tr_confirm"] = job.id
            st.rerun(scope="fragment")


ICONS = {jobs.JobStatus.QUEUED: "⏳", jobs.JobStatus.RUNNING: "🏃", jobs.JobStatus.SUCCEEDED: "✅",
         jobs.JobStatus.FAILED: "❌", jobs.JobStatus.CANCELLED: "⏹️", jobs.JobStatus.INTERRUPTED: "⚠️"}


@st.fragment(run_every=2.0)
def job_list() -> None:
    """The jobs, newest first; refreshes itself every 2 s without reloading the page (a read: the
    server's scheduling loop moves the jobs)."""
    try:
        with jobs.open_store() as store:
            listed = store.list()
            draw_jobs(store, listed)
    except FerError as exc:
        st.error(str(exc))


def draw_jobs(store: jobs.JobStore, listed: list[jobs.Job]) -> None:
    st.subheader(f"Jobs ({len(listed)})")
    if not listed:
        st.info("No jobs yet." if READ_ONLY else "No jobs yet: fill in the form above and submit one.")
    linked = st.query_params.get("job")  # a run's link on the Runs page names its job: show it first, log open
    listed = sorted(listed, key=lambda j: str(j.id) != linked)
    for job in listed:
        with st.container(border=True):
            head, metrics = st.columns([3, 2])
            with head:
                st.markdown(f"**Job {job.id}** {ICONS[job.status]} `{shown_status(None, job.status)}` · "
                            f"{job.config.get('arch')} on {job.config.get('data')}")
                st.progress(job.progress, text=f"epoch {job.epoch} of {job.total_epochs}"
                            + (f", batch {job.step}/{job.steps}" if job.status == jobs.JobStatus.RUNNING and job.steps
                               else "")
                            + (" — stopping…" if job.cancel_requested and job.status == jobs.JobStatus.RUNNING else ""))
                st.caption(f"elapsed {fmt_seconds(job.elapsed)} · ETA {fmt_seconds(job.eta)} · "
                           f"device {job.device or '-'} · run {os.path.basename(job.run_dir)}"
                           + (f" · on Ray node {job.node_id or '(not placed yet)'}" if job.runner == "ray"
                              else f" · on {job.node_id}" if job.node_id else "")
                           + (f" · sweep {job.sweep}" if job.sweep else ""))
                if job.status != jobs.JobStatus.QUEUED:  # the run's name is in the line above: a short label fits
                    link_to("pages/runs.py", "Its curves (Runs page)", run=os.path.basename(job.run_dir))
            with metrics:
                m = job.metrics
                if m:
                    st.caption(" · ".join(f"{k} {m[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                                          if k in m))
                if job.error:
                    st.error(job.error)
            job_actions(store, job)
            if job.status != jobs.JobStatus.QUEUED:
                with st.expander("Log", expanded=str(job.id) == linked):
                    st.code(read_log(job.run_dir, tail=6000) or "(empty)", language=None)


if READ_ONLY:
    st.info("This server is read-only: you can follow the jobs and open their curves, but training, cancelling, "
            "resuming and deleting are done by the lecturer (on the full server or the command line).", icon="🔒")
    job_list()
    st.stop()


def apply_preset() -> None:
    """Fill the form with a registered model's recipe (the study's experiments among them)."""
    name = st.session_state[KEY + "preset"]
    cfg = TrainConfig.for_model(name, data=st.session_state.get(KEY + "data", active_source()),
                                merge=st.session_state.get(KEY + "merge", ""))
    for key, value in cfg.to_dict().items():
        if key == "backend" and KEY + key in st.session_state:
            continue  # where jobs run is not the preset's business: the chosen backend stays
        st.session_state[KEY + key] = ", ".join(map(str, value)) if isinstance(value, list) else value
    st.session_state[KEY + "arch_choice"] = name
    st.session_state[KEY + "notation"] = get_notation(name)


def get_notation(name: str) -> str:
    return get_spec(name).train_defaults.get("notation", "") or "CBCBPD-CBCBPD-FBDF"


if KEY + "preset" not in st.session_state:  # first visit: the tiny preset, quick on any machine
    st.session_state[KEY + "preset"] = "tiny"
    st.session_state[KEY + "data"] = active_source()
    apply_preset()

models = model_table()
st.selectbox("Start from a preset", model_names(), key=KEY + "preset", on_change=apply_preset,
             format_func=lambda n: f"{n} — {models[n]['description']}",
             help="Fills the form with the architecture and the training settings of its source; "
                  "study-a … study-h are the experiments of the original study.")

errors_at = {}  # field name -> the empty slot below its widget


def field(name: str, widget, *args, **kwargs):
    """Draw a form widget bound to TrainConfig field ``name``, with a slot for its error below."""
    value = widget(*args, key=KEY + name, **kwargs)
    errors_at[name] = st.empty()
    return value


# ------------------------------------------------------------------------ the form
left, mid, right = st.columns(3)
with left:
    st.subheader("Data and model")
    sources = source_choices()
    if st.session_state.get(KEY + "data") not in sources:
        sources.append(st.session_state[KEY + "data"])
    field("data", st.selectbox, "Data source", sources, accept_new_options=True,
          help="'demo', a FER2013 CSV or an image folder; type a path to add one.")
    field("merge", st.text_input, "Class merging", placeholder="e.g. disgust=angry")
    choice = st.selectbox("Architecture", [*model_names(), NOTATION], key=KEY + "arch_choice")
    takes_width = choice in model_names(taking="width")
    if choice == NOTATION:
        notation = field("notation", st.text_input, "Layers", help="C conv 3x3, B batch norm, P 2x2 max pooling, "
                         "D dropout, F dense; '-' separates blocks. The last F is the output layer.")
        field("conv_widths", st.text_input, "Filters per conv block", help="e.g. 32, 64 (one for all, or one per block)")
        field("dense_widths", st.text_input, "Units per hidden dense layer", help="e.g. 1024")
        field("dropout", st.slider, "Dropout rate", 0.0, 0.9, step=0.05)
        field("padding", st.radio, "Padding", ["valid", "same"], horizontal=True)
        arch = notation
    else:
        st.caption(models[choice]["description"])
        params_slot = st.empty()  # filled last: counting builds the network (TensorFlow), the form comes first
        arch = choice
        if takes_width:
            field("width", st.number_input, "Width (first-stage filters; 0: the preset's own)", min_value=0,
                  max_value=1024, step=8, help="Every stage scales with it: double it for about 4x the compute.")
        if choice in model_names(taking="dropout"):
            field("dropout", st.slider, "Dropout rate (dense layers)", 0.0, 0.9, step=0.05)
    field("crop", st.slider, "Face crop (px; random crops when training)", 24, 48)
    field("init_from", st.text_input, "Start from a trained model (optional)", placeholder="run name or .keras file",
          help="Fine-tune, or run a second schedule: the network starts from that model's weights instead of "
               "random ones. It must have the same architecture and crop.")
    teacher = field("teacher", st.text_input, "Learn from a teacher (distillation, optional)",
                    placeholder="default, a run name or .keras file",
                    help="The network also learns from the teacher's answers on each augmented batch (flip "
                         "averaged): a small student can come close to a large teacher. 'default' is the shipped model.")
    if str(teacher or "").strip():
        field("temperature", st.number_input, "Temperature", min_value=0.1, max_value=100.0, format="%g",
              help="Softens both answers before they are compared; higher shows more of the teacher's doubts.")
        field("soft_weight", st.slider, "Weight of the teacher's answers", 0.0, 1.0, step=0.05,
              help="The rest goes to the labels.")
with mid:
    st.subheader("Optimisation")
    optimizer = field("optimizer", st.selectbox, "Optimizer", OPTIMIZERS)
    field("learning_rate", st.number_input, "Learning rate", min_value=0.0, format="%g", step=0.001)
    if optimizer == "sgd":
        field("momentum", st.number_input, "Momentum", min_value=0.0, max_value=0.999, format="%g")
        field("nesterov", st.checkbox, "Nesterov momentum")
    field("weight_decay", st.number_input, "Weight decay", min_value=0.0, format="%g", step=1e-4)
    schedule = field("schedule", st.selectbox, "Learning-rate schedule", SCHEDULES,
                     help="inverse-time is Keras 2's old 'decay': lr / (1 + decay × iteration)")
    if schedule == "inverse-time":
        field("lr_decay", st.number_input, "Decay per iteration", min_value=0.0, format="%g", step=1e-5)
    if schedule == "step":
        field("step_epochs", st.number_input, "Every N epochs", min_value=1, step=1)
        field("step_gamma", st.number_input, "Multiply by", min_value=0.0, max_value=1.0, format="%g")
    if schedule == "plateau":
        field("plateau_patience", st.number_input, "Patience (epochs)", min_value=1, step=1)
        field("plateau_factor", st.number_input, "Multiply by", min_value=0.0, max_value=1.0, format="%g")
    if schedule != "inverse-time":
        field("warmup_epochs", st.number_input, "Warm-up epochs", min_value=0, step=1)
    field("epochs", st.number_input, "Epochs", min_value=1, step=1)
    field("batch_size", st.number_input, "Batch size", min_value=1, step=1)
    field("label_smoothing", st.number_input, "Label smoothing", min_value=0.0, max_value=0.99, format="%g")
    field("class_weight", st.radio, "Class weights", CLASS_WEIGHTS, horizontal=True,
          help="'balanced' weighs the rare disgust class up")
    field("seed", st.number_input, "Seed", min_value=0, step=1)
    field("backend", st.selectbox, "Keras backend", ["", *installed_backends()],
          format_func=lambda b: b or f"auto ({configured_backend()})",
          help="What the job's worker runs Keras on; auto: the server's KERAS_BACKEND (else TensorFlow). JAX and "
               "PyTorch augment inside the training step, on the GPU when there is one, and never import "
               "TensorFlow; on CPUs TensorFlow is the fastest.")
    field("recalibrate_bn", st.checkbox, "Recalibrate batch norm at the end",
          help="Re-estimate the batch-norm statistics of the selected checkpoint on the Training faces without "
               "augmentation; kept only if validation accuracy does not drop. Short runs gain the most.")
with right:
    st.subheader("Augmentation")
    field("flip", st.checkbox, "Horizontal flip")
    field("rotation", st.slider, "Rotation (± degrees)", 0.0, 45.0, step=1.0)
    field("translate", st.slider, "Translation (± fraction)", 0.0, 0.3, step=0.01)
    field("zoom", st.slider, "Zoom (± fraction)", 0.0, 0.5, step=0.01)
    field("erase", st.slider, "Random erasing (probability)", 0.0, 1.0, step=0.05)
    field("aug_warmup_epochs", st.number_input, "Ramp up over (epochs)", min_value=0, step=1,
          help="Rotation, translation, zoom and erasing grow from nothing to the strengths above over these "
               "first epochs, so the network learns from clean faces first; 0: full strength from the start.")

raw = {name: st.session_state[KEY + name] for name in TrainConfig.__dataclass_fields__ if KEY + name in st.session_state}
raw["arch"] = arch
if not takes_width:
    raw["width"] = 0  # a width typed for another preset
try:  # the two checks the CLI makes too; the job store takes the config as checked here
    cfg, problems = check_world(TrainConfig.parse(raw)), {}
except ConfigError as exc:
    cfg, problems = None, exc.fields or {"": str(exc)}
if cfg is not None and choice == NOTATION:
    params = count_notation_params(cfg.arch, cfg.conv_widths, cfg.dense_widths, 7, cfg.padding, cfg.crop)
    errors_at["notation"].caption(f"{params:,} parameters")
for name, message in problems.items():
    if name == "arch" and choice == NOTATION:
        name = "notation"
    (errors_at.get(name) or st).error(message)
for name, message in (config_notes(cfg) if cfg is not None else {}).items():
    (errors_at.get(name) or st).warning(message)


@st.fragment
def estimate(cfg: TrainConfig | None) -> None:
    """Measure, on request, how long an epoch of this form's configuration will take here."""
    if cfg is None:
        return
    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if st.button("Estimate the time per epoch", key=KEY + "estimate",
                 help="Runs a few real training steps of this network on this machine (about 10-30 s)."):
        try:
            ds = cached_dataset(cfg.data, cfg.merge)
            with st.spinner("Timing a few training steps…"):
                est = estimate_epoch(cfg, len(ds.subset("Training")), len(ds.subset("PublicTest")), ds.num_classes)
            st.session_state[KEY + "estimated"] = (key, est, device_line(), running_jobs())
        except FerError as exc:
            st.error(str(exc))
    done = st.session_state.get(KEY + "estimated")
    if done and done[0] == key:
        _, est, device, busy = done
        startup = measured_startup(cfg.data)
        total = (f"**{cfg.epochs} epochs: about {fmt_duration(est['total_seconds'] + startup[0])}**, start-up "
                 f"included ({fmt_duration(startup[0])} to import Python's libraries and TensorFlow and load the "
                 f"data set, measured on job {startup[1]} here)." if startup else
                 f"**{cfg.epochs} epochs: about {fmt_duration(est['total_seconds'])}**, plus the job's start-up "
                 "(importing TensorFlow and loading the data set; not measured on this server yet: the first "
                 "job measures it, and later estimates include it).")
        st.info(f"About **{fmt_duration(est['epoch_seconds'])} per epoch**, {device.removeprefix('training on ')}: "
                f"{est['steps_per_epoch']:,} steps of {cfg.batch_size} faces at {est['step_seconds']:.2f} s, plus "
                f"{est['val_seconds']:.0f} s of validation. " + total
                + (f" Measured while {busy} other job(s) ran: alone it would be faster." if busy else "")
                + (f" Measured under {configured_backend()}, this server's backend: the job trains under "
                   f"{cfg.backend}, at that backend's own speed (README, 'Other Keras backends')."
                   if cfg.backend and cfg.backend != configured_backend() else ""))
    elif done:
        st.caption("The form changed since the last estimate.")


def measured_startup(data: str) -> tuple[float, int] | None:
    """``(seconds, job id)``: how long the last finished job of this machine took from its start
    to its first epoch (Python, Keras and TensorFlow imported, the data set loaded, the network
    built: the run's own ``started``), preferring one on the same data; None before any job ran.

    :func:`fer_core.training.trainer.estimate_epoch` times the epochs only, in this server's
    process, where all of that is done already."""
    try:
        with jobs.open_store() as store:
            ended = [j for j in store.list() if j.status in jobs.ENDED and j.runner == "local" and j.started]
    except FerError:
        return None
    for job in sorted(ended, key=lambda j: (j.config.get("data") == data, j.finished or 0), reverse=True):
        try:
            began = read_info(job.run_dir).get("started")
        except (FerError, OSError):
            continue
        if isinstance(began, (int, float)) and began >= job.started:  # the same attempt's start
            return began - job.started, job.id
    return None


def running_jobs() -> int:
    try:
        with jobs.open_store() as store:
            return sum(j.status == jobs.JobStatus.RUNNING for j in store.list())
    except FerError:
        return 0


estimate(cfg)
name_col, note_col, tags_col = st.columns([2, 3, 2])
run_name = name_col.text_input("Run name (optional)", key=KEY + "run_name", placeholder="e.g. seed-1-baseline",
                               help="The run's folder under data/runs; a time stamp when empty.")
note = note_col.text_input("Note (optional)", key=KEY + "note", placeholder="e.g. label smoothing 0.1, seed 1",
                           help="Kept with the run and shown on the Runs page.")
tags = tags_col.text_input("Tags (optional)", key=KEY + "tags", placeholder="e.g. smoothing, seeds",
                           help="Comma-separated; the Runs page groups runs by tag (mean and spread).")
ray_address, _ = jobs.ray_address_setting()
where = "local"
if ray_address:
    where = st.radio("Run on", jobs.RUNNERS, index=jobs.RUNNERS.index(jobs.default_runner_name()), horizontal=True,
                     key=KEY + "runner", format_func=lambda r: {"local": "this machine",
                                                                "ray": f"the Ray cluster ({ray_address})"}[r])
if st.button("Submit training job", type="primary", disabled=cfg is None, key=KEY + "submit"):
    try:
        job_id = jobs.submit(cfg, name=run_name, note=note, tags=tags, where=where, limits=jobs.Limits.for_server(),
                             mine=st.session_state.setdefault("tr_mine", []))
        st.session_state["tr_mine"].append(job_id)
        st.toast(f"Job {job_id} queued")
        st.session_state["tr_last_job"] = job_id
    except FerError as exc:
        st.error(str(exc))

with st.expander("Submit a sweep: several seeds, or the whole study"):
    kind = st.radio("Sweep", list(jobs.FORM_SWEEPS), format_func=jobs.FORM_SWEEPS.get, horizontal=True,
                    key=KEY + "sweep_kind")
    seeds_col, epochs_col = st.columns(2)
    seeds = seeds_col.text_input("Seeds", "0,1,2", key=KEY + "sweep_seeds", help="separated by commas")
    sweep_epochs = None
    if kind == "study":
        sweep_epochs = epochs_col.number_input("Epochs per experiment (0: each experiment's own)", 0, 10_000, 0,
                                               key=KEY + "sweep_epochs") or None
        st.caption("Experiments A-H of the original study (study-a … study-h, each with its own settings) on the "
                   "form's data set, each with every seed.")
    else:
        st.caption("The form's configuration, once per seed; the Runs page shows the mean and spread over them.")
    st.caption("On this machine a sweep's jobs queue and run one after another; on a Ray cluster they run in "
               "parallel, as many at once as the cluster has room for.")
    if st.button("Submit sweep", disabled=cfg is None, key=KEY + "sweep_submit"):
        try:
            sweep_id, ids = jobs.submit_sweep(jobs.form_sweep(kind, cfg, seeds, sweep_epochs), where=where, note=note,
                                              tags=tags, limits=jobs.Limits.for_server(),
                                              mine=st.session_state.setdefault("tr_mine", []))
            st.session_state["tr_mine"].extend(ids)
            st.success(f"Sweep {sweep_id}: jobs {', '.join(map(str, ids))} queued.")
        except FerError as exc:
            st.error(str(exc))


@st.fragment
def where_jobs_run() -> None:
    """The runner in use, the cluster's CPUs and GPUs, and the Ray address setting."""
    address, from_env = jobs.ray_address_setting()
    try:
        view = jobs.cluster_view()
    except FerError as exc:
        st.warning(str(exc))
        view = None
    if view:
        st.markdown(f"**Runner:** {'Ray cluster at ' + view['address'] if view['runner'] == 'ray' else 'this machine'}"
                    f" · {view['nodes']} node(s) · room for {view['slots']} job(s) at once")
        cols = st.columns(3)
        free = lambda key: "" if view.get(f"free_{key}") is None else f"{view[f'free_{key}']:g} free of "  # noqa: E731
        cols[0].metric("CPUs", f"{free('cpus')}{view['cpus']:g}")
        cols[1].metric("GPUs", f"{free('gpus')}{view['gpus']:g}")
        cols[2].metric("FER Studio jobs running", sum(view["jobs_per_node"].values()))
        if view["jobs_per_node"]:
            st.dataframe([{"node": k, "jobs": v} for k, v in view["jobs_per_node"].items()], hide_index=True)
        if view["runner"] == "ray" and not view["loopback"]:
            st.warning("This cluster's Jobs API is reachable over the network: anyone who can reach it can run code "
                       "on it (CVE-2023-48022). Use it only behind a firewall or with Ray's token authentication "
                       "(README, \"Training on a Ray cluster\").")
    if from_env:
        st.caption(f"FER_RAY_ADDRESS={address} is set for this server; it wins over the setting below.")
    new = st.text_input("Ray cluster (dashboard address; empty: this machine)", value=load_settings().ray_address,
                        key=KEY + "ray_address", placeholder="http://127.0.0.1:8265")
    if st.button("Save the address", key=KEY + "ray_save"):
        try:
            saved = jobs.save_ray_address(new)
            st.success(f"Jobs now go to the Ray cluster at {saved}." if saved else "Jobs now run on this machine.")
        except FerError as exc:
            st.error(str(exc))


with st.expander("Where jobs run"):
    where_jobs_run()



job_list()
if cfg is not None and choice != NOTATION:
    params_slot.caption(f"{param_count(cfg.arch, cfg.crop, json.dumps(cfg.arch_options())):,} parameters at this "
                        f"{cfg.crop}x{cfg.crop} crop")
