"""Run directories: find them, summarise them, and say which are broken and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import rundir
from .errors import FerError
from .infer import DEFAULT_MODEL_DIR, resolve_model
from .models import notation_of
from .trainconfig import TrainConfig


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
    def status(self) -> str:
        if self.error:
            return "broken"
        return self.info.get("status", "new")

    @property
    def model_file(self) -> Path | None:
        """The model to evaluate or predict with: the final model, else the best checkpoint."""
        return rundir.model_file(self.path)

    def row(self) -> dict:
        """A flat table row: main hyperparameters and results."""
        cfg, best, cal = self.config, self.best, self.info.get(rundir.BN_RECORD) or {}
        return {
            "run": self.name, "status": self.status, "note": self.info.get(rundir.NOTE, ""),
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


def reference_rows(model_dir: str | Path = DEFAULT_MODEL_DIR) -> list[dict]:
    """The study table's reference points: the published results, then the shipped model
    (PrivateTest with its default TTA, from its ``metrics.json``) when it is there."""
    rows = []
    for ref in PUBLISHED:
        row = dict.fromkeys(STUDY_COLUMNS)
        row.update(kind="published", **ref)
        if ref.get("preset"):
            row["architecture"] = notation_of(ref["preset"])
        rows.append(row)
    metrics = rundir.read_model_metrics(model_dir)
    if metrics:
        try:
            cfg = rundir.read_config(model_dir)
        except FerError:
            cfg = None
        tta = metrics.get("default_tta", "none")
        results = metrics.get("results", {})
        row = _study_row(
            "shipped model", f"FER Studio's shipped model (TTA {tta})", cfg, metrics.get("params"),
            metrics.get("epochs_trained"), results.get(f"PublicTest/{tta}", {}).get("accuracy"),
            results.get(f"PrivateTest/{tta}", {}).get("accuracy"))
        if metrics.get("kind") == "ensemble":  # its members' architectures, not one config's
            archs = [m["config"]["arch"] for m in metrics["members"]]
            row.update({"preset": f"ensemble of {len(archs)}: " + " + ".join(archs),
                        "architecture": " + ".join(notation_of(a) or a for a in archs),
                        "epochs": sum(st["epochs"] for m in metrics["members"] for st in m["stages"])})
        rows.append(row)
    return rows


def shipped_histories(model_dir: str | Path = DEFAULT_MODEL_DIR) -> list[RunSummary]:
    """The per-epoch histories shipped with the default model, as runs the curves can draw."""
    return [RunSummary(Path(name), metrics=rows) for name, rows in rundir.read_histories(model_dir).items()]


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
    if run.info.get("status") == "finished" and run.model_file is None:
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


def curves(runs: list[RunSummary]) -> list[dict]:
    """Long-format rows (run, epoch, metric, split, value) for loss and accuracy curves."""
    rows = []
    for run in runs:
        for r in run.metrics:
            for metric in ("loss", "accuracy"):
                for split, key in (("training", metric), ("validation", f"val_{metric}")):
                    if key in r:
                        rows.append({"run": run.name, "epoch": r["epoch"], "metric": metric, "split": split,
                                     "value": r[key]})
    return rows
