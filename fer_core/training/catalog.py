"""Run directories: find them, summarise them, and say which are broken and why."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from fer_core.data.loading import data_identity
from fer_core.errors import FerError
from fer_core.inference import loader
from fer_core.inference.loader import resolve_model
from fer_core.models.build import notation_of
from fer_core.runs import model_folder, rundir
from fer_core.runs.status import RunStatus, run_status
from fer_core.runs.trainconfig import TrainConfig


@dataclass
class RunSummary:
    """What the pages show about one run directory."""

    path: Path
    config: TrainConfig | None = None
    info: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    error: str | None = None  # why the run is broken, None when it is readable

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best(self) -> dict:
        rows = [r for r in self.metrics if "val_accuracy" in r]
        return max(rows, key=lambda r: r["val_accuracy"]) if rows else {}

    @property
    def status(self) -> RunStatus:
        return run_status(self.info, readable=not self.error)

    @property
    def finished(self) -> bool:
        return self.error is None and rundir.is_finished(self.info)

    @property
    def model_file(self) -> Path | None:
        """The model to evaluate or predict with: the final model, else the best checkpoint."""
        return rundir.model_file(self.path)

    def row(self) -> dict:
        """A flat table row: main hyperparameters and results."""
        cfg, best, cal = self.config, self.best, self.info.get(rundir.BN_RECORD) or {}
        return {
            "run": self.name, "status": str(self.status), "note": self.info.get(rundir.NOTE, ""),
            "job": self.info.get(rundir.JOB),
            "arch": cfg.arch if cfg else None, "data": cfg.data if cfg else None,
            "optimizer": cfg.optimizer if cfg else None, "lr": cfg.learning_rate if cfg else None,
            "schedule": cfg.schedule if cfg else None, "batch": cfg.batch_size if cfg else None,
            "epochs": f"{len(self.metrics)}/{cfg.epochs}" if cfg else None,
            "params": self.info.get("params"),
            "best val_acc": best.get("val_accuracy"), "best epoch": best.get("epoch"),
            # the model's accuracy once its batch-norm statistics were re-estimated (see calibrate)
            "recalibrated val_acc": cal.get("val_accuracy_after") if cal.get("kept") else None,
            "minutes": round(sum(r.get("epoch_seconds", 0) for r in self.metrics) / 60, 1),
            "problem": self.error,
        }

    def study_row(self) -> dict:
        """A row of the original study's experiment table (see :data:`STUDY_COLUMNS`)."""
        return _study_row("your run", self.name, self.config, self.info.get("params"), len(self.metrics),
                          self.best.get("val_accuracy"), None)


#: The study table's columns. "val accuracy" is the best PublicTest accuracy during training (no
#: TTA); "test accuracy" is PrivateTest, reported for the reference points only.
STUDY_COLUMNS = ("kind", "run", "preset", "architecture", "optimizer", "learning rate", "decay", "weight decay",
                 "batch size", "parameters", "epochs", "val accuracy", "test accuracy")
#: Published reference points, PrivateTest accuracy as their authors report it. The VGG of
#: Pramerdorfer and Kampel is the one the pk-vgg preset re-implements (its notation).
PUBLISHED = (
    {"run": "Pramerdorfer & Kampel 2016, VGG (their paper)", "preset": "pk-vgg", "test accuracy": 0.727},
    {"run": "Kaggle FER2013 challenge winner (Tang 2013, CNN + L2-SVM)", "test accuracy": 0.7116},
)


def _study_row(kind: str, name: str, cfg: TrainConfig | None, params, epochs, val, test) -> dict:
    row = dict.fromkeys(STUDY_COLUMNS)
    row.update(kind=kind, run=name, parameters=params, epochs=epochs, **{"val accuracy": val, "test accuracy": test})
    if cfg is not None:
        row.update({"preset": cfg.arch, "architecture": notation_of(cfg.arch),
                    "optimizer": cfg.optimizer.upper() if cfg.optimizer == "sgd" else cfg.optimizer.capitalize(),
                    "learning rate": cfg.learning_rate,
                    # Keras 2's per-iteration decay is the inverse-time schedule; other schedules have none
                    "decay": cfg.lr_decay if cfg.schedule == "inverse-time" else 0.0,
                    "weight decay": cfg.weight_decay, "batch size": cfg.batch_size})
    return row


def reference_rows(model_dir: str | Path | None = None) -> list[dict]:
    """The study table's reference points: the published results, then the shipped models
    (PrivateTest with their default TTA, from their ``metrics.json``) that are there: the default
    and the fast one. ``model_dir``: only that model folder instead."""
    rows = []
    for ref in PUBLISHED:
        row = dict.fromkeys(STUDY_COLUMNS)
        row.update(kind="published", **ref)
        if ref.get("preset"):
            row["architecture"] = notation_of(ref["preset"])
        rows.append(row)
    folders = [(model_dir, None)] if model_dir is not None else \
        [(loader.shipped_folder(name), name) for name in (loader.DEFAULT_MODEL, loader.FAST_MODEL)]
    for folder, name in folders:
        row = _shipped_row(folder, name)
        if row is not None:
            rows.append(row)
    return rows


def _shipped_row(folder: str | Path, name: str | None) -> dict | None:
    """``folder``'s row; ``name`` None: the shipped model its metrics say it was released as."""
    metrics = model_folder.read_model_metrics(folder)
    if not metrics:
        return None
    name = name or metrics.get("shipped_as") or loader.DEFAULT_MODEL
    try:
        cfg = rundir.read_config(folder)
    except FerError:
        cfg = None
    tta = metrics.get("default_tta", "none")
    results = metrics.get("results", {})
    kind, label = (("shipped model", "FER Studio's shipped model") if name == loader.DEFAULT_MODEL else
                   ("shipped fast model", "FER Studio's fast model"))
    row = _study_row(kind, f"{label} (TTA {tta})", cfg, metrics.get("params"), metrics.get("epochs_trained"),
                     results.get(f"PublicTest/{tta}", {}).get("accuracy"), results.get(f"PrivateTest/{tta}", {}).get("accuracy"))
    if metrics.get("kind") == "ensemble":  # its members' architectures, not one config's
        archs = [m["config"]["arch"] for m in metrics["members"]]
        row.update({"preset": f"ensemble of {len(archs)}: " + " + ".join(archs),
                    "architecture": " + ".join(notation_of(a) or a for a in archs),
                    "epochs": sum(st["epochs"] for m in metrics["members"] for st in m["stages"])})
    return row


def shipped_histories(model_dir: str | Path | None = None) -> list[RunSummary]:
    """The per-epoch histories shipped with a released model (the default model when no folder is
    given), as runs the curves can draw.

    The default folder is looked up at call time, not bound when this module is first imported
    (a test that hides the shipped model must not hide its histories for good)."""
    folder = model_dir if model_dir is not None else loader.DEFAULT_MODEL_DIR
    return [RunSummary(Path(name), metrics=rows) for name, rows in model_folder.read_histories(folder).items()]


def shipped_members(model_dir: str | Path) -> list[dict]:
    """Every run behind a released model, from its ``metrics.json``: per member (an ensemble's, or
    the model itself) its stages (recipes), epochs, training minutes, PublicTest accuracy and
    whether its per-epoch history was shipped (``history/<member>.jsonl``)."""
    metrics = model_folder.read_model_metrics(model_dir)
    members = metrics.get("members") or ([{"name": metrics["run"], "stages": metrics.get("stages") or [],
                                           "train_minutes": metrics.get("train_minutes"),
                                           "results": {"PublicTest": (metrics.get("results") or {}).get(
                                               f"PublicTest/{metrics.get('default_tta', 'none')}", {}).get("accuracy")}}]
                                         if metrics.get("run") else [])
    kept = model_folder.read_histories(model_dir)
    return [{"member": m.get("name", "?"),
             "stages": ", ".join(str(st.get("recipe") or st.get("run")) for st in m.get("stages") or []),
             "epochs": sum(int(st.get("epochs") or 0) for st in m.get("stages") or []) or None,
             "minutes": m.get("train_minutes"), "PublicTest": (m.get("results") or {}).get("PublicTest"),
             "history": m.get("name") in kept or any(str(st.get("run")) in kept for st in m.get("stages") or [])}
            for m in members]


def summarize(path: str | Path) -> RunSummary:
    """Read a run directory; problems are recorded in ``error``, never raised."""
    run = RunSummary(Path(path))
    try:
        run.config = rundir.read_config(run.path)
    except FerError as exc:
        run.error = str(exc)
        return run
    try:
        run.info = rundir.read_info(run.path)
    except FerError as exc:
        run.error = str(exc)
    run.metrics = rundir.read_metrics(run.path)
    if run.finished and run.model_file is None:
        run.error = f"{run.path}: finished, but its model file is missing."
    return run


def lineage(run: RunSummary) -> list[RunSummary]:
    """The runs a run grew from through ``init_from``, oldest first, ending with ``run`` itself.

    A source that is no longer a readable run directory (or a plain ``.keras`` file) ends the chain.
    """
    chain, seen = [run], {run.path.resolve()}
    while chain[0].config is not None and chain[0].config.init_from:
        spec = chain[0].config.init_from
        sibling = chain[0].path.parent / spec  # a run name means a run beside this one, wherever the data dir is now
        try:
            src = sibling if rundir.is_run(sibling) else resolve_model(spec).run_dir
        except FerError:
            break
        if src is None or src.resolve() in seen:
            break
        seen.add(src.resolve())
        chain.insert(0, summarize(src))
    return chain


def list_runs(root: str | Path | None = None) -> list[RunSummary]:
    """Every run directory under ``root`` (default ``data/runs``), newest first."""
    return [summarize(p) for p in rundir.run_dirs(root)]


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with weight ``weight`` (0 leaves the
    values as they are, 0.99 nearly flattens them), debiased so the first points are not pulled
    towards zero. A value that is not finite passes through and does not enter the average."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be in [0, 1)")
    out, last, n = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last, n = last * weight + (1 - weight) * v, n + 1
        out.append(last / (1 - weight ** n))
    return out


def elapsed_minutes(rows: list[dict]) -> list[float | None]:
    """Wall-clock minutes of training at the end of each epoch (the epochs' own durations added
    up, so time spent stopped between a cancel and a resume does not count); None when a row
    lacks its duration."""
    out, total = [], 0.0
    for r in rows:
        seconds = r.get("epoch_seconds")
        if not isinstance(seconds, (int, float)):
            out.extend([None] * (len(rows) - len(out)))
            break
        total += seconds
        out.append(round(total / 60, 3))
    return out


def curves(runs: list[RunSummary], smoothing: float = 0.0) -> list[dict]:
    """Long-format rows for loss and accuracy curves: run, epoch, minutes (see
    :func:`elapsed_minutes`), metric, split, ``value`` (smoothed with weight ``smoothing``, see
    :func:`smooth`) and ``raw``."""
    rows = []
    for run in runs:
        minutes = elapsed_minutes(run.metrics)
        for metric in ("loss", "accuracy"):
            for split, key in (("training", metric), ("validation", f"val_{metric}")):
                points = [(r, m) for r, m in zip(run.metrics, minutes) if key in r]
                values = smooth([float(r[key]) for r, _ in points], smoothing)
                rows += [{"run": run.name, "epoch": r["epoch"], "minutes": m, "metric": metric, "split": split,
                          "value": v, "raw": r[key]} for (r, m), v in zip(points, values)]
    return rows


def lr_curve(runs: list[RunSummary]) -> list[dict]:
    """Rows (run, epoch, minutes, lr): the learning rate each epoch trained with."""
    rows = []
    for run in runs:
        for r, m in zip(run.metrics, elapsed_minutes(run.metrics)):
            if isinstance(r.get("lr"), (int, float)):
                rows.append({"run": run.name, "epoch": r["epoch"], "minutes": m, "lr": r["lr"]})
    return rows


#: Metrics summarised per run, and whether their best value is the largest or the smallest.
SUMMARY_METRICS = (("val_accuracy", max), ("accuracy", max), ("val_loss", min), ("loss", min))


def metric_summary(runs: list[RunSummary]) -> list[dict]:
    """Per run and metric: the best value and its epoch, and the last value and its epoch."""
    rows = []
    for run in runs:
        for key, pick in SUMMARY_METRICS:
            points = [(r["epoch"], r[key]) for r in run.metrics if isinstance(r.get(key), (int, float))]
            if not points:
                continue
            best = pick(points, key=lambda p: p[1])
            rows.append({"run": run.name, "metric": key, "best": best[1], "best epoch": best[0], "last": points[-1][1],
                         "last epoch": points[-1][0]})
    return rows


def config_table(runs: list[RunSummary], only_differences: bool = False) -> list[dict]:
    """The configurations side by side: one row per setting, one column per run (values as text;
    "-" for a run whose configuration is unreadable). With ``only_differences`` and two runs or
    more, only the settings whose values differ between them."""
    configs = {run.name: (run.config.to_dict() if run.config else {}) for run in runs}
    keys = list(dict.fromkeys(k for cfg in configs.values() for k in cfg))
    rows = []
    for key in keys:
        values = {name: _shown(cfg[key]) if key in cfg else "-" for name, cfg in configs.items()}
        if only_differences and len(runs) > 1 and len(set(values.values())) < 2:
            continue
        rows.append({"setting": key, **values})
    return rows


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


#: How runs can be grouped: the sweep they were submitted in, their architecture, their tags.
GROUP_BY = ("sweep", "architecture", "tag")
UNGROUPED = {"sweep": "(not in a sweep)", "architecture": "(unknown)", "tag": "(untagged)"}


def groups_of(run: RunSummary, by: str) -> list[str]:
    """The groups ``run`` belongs to (a run with two tags is in both)."""
    if by not in GROUP_BY:
        raise ValueError(f"group by one of {GROUP_BY}")
    if by == "sweep":  # one group per configuration of the sweep: its seeds are the group's runs
        label = run.info.get(rundir.SWEEP_CONFIG)
        found = [f"sweep {run.info[rundir.SWEEP]}" + (f" · {label}" if label else "")] if run.info.get(rundir.SWEEP) else []
    elif by == "architecture":
        found = [run.config.arch] if run.config else []
    else:
        found = [str(t) for t in run.info.get(rundir.TAGS) or []]
    return found or [UNGROUPED[by]]


def data_label(run: RunSummary) -> str:
    """The data set a run was trained on, as a group name shows it ("FER2013", "demo", a folder name)."""
    ident = data_identity(run.config.data) if run.config else "unknown data"
    return ident if ident == "FER2013" or ident.startswith("demo") or ident == "unknown data" else Path(ident).name


def grouped(runs: list[RunSummary], by: str) -> dict[str, list[RunSummary]]:
    """``{group: its runs}``, groups in order of first appearance. Runs trained on different data
    sets never share a group (a mean of demo and FER2013 accuracies means nothing): when the runs
    span several data sets, each group is split by data set and says which (``tiny · on demo``)."""
    several = len({data_label(r) for r in runs}) > 1
    out: dict[str, list[RunSummary]] = {}
    for run in runs:
        for g in groups_of(run, by):
            out.setdefault(g + (f" · on {data_label(run)}" if several else ""), []).append(run)
    return out


def _spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def group_table(runs: list[RunSummary], by: str) -> list[dict]:
    """One row per group: its runs, and the mean, standard deviation (over runs, n-1), lowest
    and highest of their best validation accuracies (runs without a finished epoch do not count)."""
    rows = []
    for g, members in grouped(runs, by).items():
        best = [float(r.best["val_accuracy"]) for r in members if r.best]
        s = _spread(best)
        rows.append({"group": g, "runs": len(members), "with results": len(best),
                     "best val_acc mean": s["mean"], "± std": s["std"], "min": s["min"], "max": s["max"],
                     "members": ", ".join(r.name for r in members)})
    return rows


def group_curves(runs: list[RunSummary], by: str, smoothing: float = 0.0) -> list[dict]:
    """Per group, epoch, metric and split: the mean over the group's runs that reached that epoch,
    with the lowest and highest (a band), from :func:`curves` (smoothed the same way)."""
    rows = []
    for g, members in grouped(runs, by).items():
        points: dict[tuple, list[float]] = {}
        for row in curves(members, smoothing):
            points.setdefault((row["epoch"], row["metric"], row["split"]), []).append(row["value"])
        for (epoch, metric, split), values in sorted(points.items()):
            s = _spread(values)
            rows.append({"group": g, "epoch": epoch, "metric": metric, "split": split, "mean": s["mean"],
                         "low": s["min"], "high": s["max"], "runs": len(values)})
    return rows
