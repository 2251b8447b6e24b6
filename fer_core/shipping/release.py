"""Ship a trained run as the default model: copy it into the package, measure it, write its card.

``python -m fer_core release RUN_DIR --data FER2013_DIR`` copies the run's best checkpoint
(selected on PublicTest during training; its batch-norm-recalibrated version when one was kept)
into ``fer_core/shipping/default_model/`` (``--as fast``: ``fast_model/``; kernels stored in float16,
see :func:`fer_core.shipping.compact.compact`) with its config, class names and per-epoch history
(``history/``, each training run behind it), evaluates the saved file on PublicTest and PrivateTest
with every TTA mode, times it, and writes ``metrics.json`` and ``MODEL_CARD.md`` from those
measurements.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np

from fer_core import files
from fer_core.data.demo import make_demo_dataset
from fer_core.data.loading import load_dataset
from fer_core.errors import ModelError
from fer_core.inference.evaluate import evaluate
from fer_core.inference.forward import DEFAULT_TTA, predict_proba
from fer_core.inference.engine import load_engine
from fer_core.inference.loader import DEFAULT_MODEL, DEFAULT_MODEL_DIR, ModelRef, load_model, shipped_folder
from fer_core.models.ensemble import build_ensemble
from fer_core.models.ensemble import members as ensemble_members
from fer_core.runs import commands, model_folder, rundir
from fer_core.runs.recipes import find_recipe, list_recipes
from fer_core.runs.trainconfig import TrainConfig
from fer_core.shipping import card
from fer_core.shipping.compact import compact
from fer_core.shipping.compiled import compile_shipped
from fer_core.shipping.measure import measure_release, measure_speed
from fer_core.training.catalog import lineage, summarize

MAX_MB = 25  # project rule: no tracked file over 25 MB (kernels in float16: three v1/v2-size members take 13 MB)
TARGET = card.TARGET


def release(sources, data: str, target: Path | None = None, log=print, note: str = "",
            shipped_as: str = DEFAULT_MODEL) -> dict:
    """Ship a run, or several averaged as one ensemble, as a shipped model (``shipped_as``: the
    default or the fast one): copy it into ``target`` (the shipped model's own folder unless
    given), measure the file as shipped, write ``metrics.json`` and the card; return the metrics.

    Crash protocol: everything is written into a staging folder beside ``target`` and swapped in
    only once complete (``target`` renamed to a ``.old`` sibling, the staging folder renamed to
    ``target``, the old one removed). A failure leaves ``target`` as it was, never a model without
    its card and metrics; a crash between the two renames is undone by the next release.

    ``sources``: a run directory, or a list of them (released model folders may be ensemble
    members). ``note`` goes into the card's Data section (how the model was chosen, which
    earlier candidates were measured on PrivateTest).

    Raises:
        ModelError: a run has no model, the members disagree on their classes, or the model file
            is larger than MAX_MB (25 MB).
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise ModelError("Give a run directory to release (several: an ensemble of them).")
    target = Path(target) if target is not None else shipped_folder(shipped_as)
    staging, old = target.with_name(f".{target.name}.staging"), target.with_name(f".{target.name}.old")
    if old.exists() and not target.exists():
        old.rename(target)  # a crash between the two renames below: the last complete release is back
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if len(sources) > 1:
            metrics, render, ds = _release_ensemble(sources, data, staging, log, shipped_as)
        elif not model_folder.read_model_metrics(sources[0]).get("results"):  # a run, not a released model
            metrics, render, ds = _release_run(sources[0], data, staging, log, shipped_as)
        else:
            metrics, render, ds = _release_folder(sources[0], data, staging, log, shipped_as)
        metrics["engine"] = compile_shipped(staging, ds, metrics["results"], shipped_as, log)
        metrics["speed"] = metrics["engine"].pop("speed", None) or metrics["speed"]  # as the app runs it
        if note:
            metrics["note"] = note
        metrics["shipped_as"] = shipped_as
        files.write_json(staging / model_folder.MODEL_METRICS, metrics)
        files.write_text(staging / model_folder.MODEL_CARD, render(metrics))
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


def _release_run(run_dir: str | Path, data: str, target: Path, log, shipped_as: str = DEFAULT_MODEL):
    """A single run shipped: its metrics and how its card is written (both by :func:`release`)."""
    run = summarize(run_dir)
    if run.error or run.config is None:
        raise ModelError(f"{run_dir}: {run.error or 'not a run directory'}")
    recalibrated = run.info.get(rundir.BN_RECORD, {}).get("kept", False)
    source = released_file(run, run_dir)
    target.mkdir(parents=True, exist_ok=True)
    classes = rundir.read_classes(run.path)
    # measured as shipped (kernels in float16): the card's numbers are those of the file
    size_mb = _save_shipped(load_model(ModelRef(source, run.name, classes)), target, f"{source}: ")
    model = load_model(ModelRef(rundir.final_model(target), run.name, classes))
    rundir.write_config(target, run.config)
    rundir.write_classes(target, classes)

    ds = load_dataset(data, merge=run.config.merge)
    # a run started from another run's weights (init_from) needs that run's compute and command too
    runs = lineage(run)
    stages = [stage(r) for r in runs]
    model_folder.write_histories(target, {r.name: r.metrics for r in runs})
    metrics = {"run": run.name, "epochs_trained": len(run.metrics), "selected_epoch": run.best.get("epoch"),
               "params": int(model.count_params()), "size_mb": round(size_mb, 2),
               "train_minutes": round(sum(st["train_minutes"] for st in stages), 1), "stages": stages,
               "device": run.info.get("device"), "num_train": run.info.get("num_train"),
               "bn_recalibration": run.info.get(rundir.BN_RECORD) if recalibrated else None,
               "default_tta": DEFAULT_TTA, "data": str(ds.source), **measure_release(model, ds, log, shipped_as)}
    network = card.describe_network(model)
    return metrics, lambda m: card.render(m, run.config.to_dict(), run.metrics, network), ds


def _release_folder(path: str | Path, data: str, target: Path, log, shipped_as: str = DEFAULT_MODEL):
    """A released model's folder shipped again (e.g. one member of the default ensemble, see
    :func:`member_folder`): its metrics and how its card is written (both by :func:`release`)."""
    model, info = _member(path)
    target.mkdir(parents=True, exist_ok=True)
    size_mb = _save_shipped(model, target, f"{path}: ")
    cfg = TrainConfig.parse(info["config"])
    ds = load_dataset(data, merge=cfg.merge)
    model = load_model(ModelRef(rundir.final_model(target), info["name"], ds.class_names))
    rundir.write_config(target, cfg)
    rundir.write_classes(target, ds.class_names)
    history = info["history"]
    model_folder.write_histories(target, {info["name"]: history})
    stages = info["stages"]
    best = max(history, key=lambda row: row.get("val_accuracy", 0)) if history else {}
    metrics = {"run": info["name"], "epochs_trained": len(history) or (stages[-1]["epochs"] if stages else 0),
               "selected_epoch": best.get("epoch"), "params": int(model.count_params()),
               "size_mb": round(size_mb, 2), "train_minutes": info["train_minutes"], "stages": stages,
               "device": stages[-1].get("device") if stages else None, "num_train": None,
               "bn_recalibration": None, "member_of": info.get("member_of"), "default_tta": DEFAULT_TTA,
               "data": str(ds.source), **measure_release(model, ds, log, shipped_as)}
    network = card.describe_network(model)
    return metrics, lambda m: card.render(m, cfg.to_dict(), history, network), ds


def member_folder(ensemble: Path, name: str, out: Path) -> Path:
    """Write one member of a shipped ensemble (``name``, as its card lists it) as a released
    model's folder ``out`` (model, config, classes, history, what its card said of it), so
    :func:`release` can ship it alone.

    Raises:
        ModelError: ``ensemble`` is not an ensemble, or has no member of that name.
    """
    metrics = model_folder.read_model_metrics(ensemble)
    infos = metrics.get("members") or []
    names = [m["name"] for m in infos]
    if metrics.get("kind") != "ensemble" or name not in names:
        raise ModelError(f"{ensemble}: no ensemble member named {name!r}" +
                         (f"; its members are {', '.join(names)}." if names else " (not an ensemble)."))
    i = names.index(name)
    ensemble_model = load_model(ModelRef(rundir.final_model(ensemble), "ensemble", rundir.read_classes(ensemble) or ()))
    member = ensemble_members(ensemble_model)[i]
    out.mkdir(parents=True, exist_ok=True)
    files.atomic_write(rundir.final_model(out), lambda tmp: member.save(tmp))
    rundir.write_config(out, TrainConfig.parse(infos[i]["config"]))
    rundir.write_classes(out, rundir.read_classes(ensemble) or ())
    model_folder.write_histories(out, {name: model_folder.read_histories(ensemble).get(name, [])})
    files.write_json(out / model_folder.MODEL_METRICS, {
        "run": name, "results": infos[i].get("results"), "stages": infos[i].get("stages", []),
        "train_minutes": infos[i].get("train_minutes", 0), "member_of": str(metrics.get("run"))})
    return out


def released_file(run, where) -> Path:
    """The model file a run releases: the recalibrated model (model.keras) when one was kept,
    else the checkpoint selected on PublicTest."""
    recalibrated = run.info.get(rundir.BN_RECORD, {}).get("kept", False)
    best = rundir.checkpoint(run.path, "best")
    file = run.model_file if recalibrated or best is None else best
    if file is None:
        raise ModelError(f"{where}: no checkpoint to release yet.")
    return file


def _save_shipped(model, target: Path, what: str) -> float:
    """Save ``model`` as ``target``'s model file (atomically, without an optimizer, kernels in
    float16: see :func:`compact`); its size in MB. ``what`` starts the error message when it is
    over MAX_MB."""
    def save_small(tmp: Path) -> None:
        model.save(tmp)
        compact(tmp)
        if tmp.stat().st_size / 1e6 > MAX_MB:
            raise ModelError(f"{what}{tmp.stat().st_size / 1e6:.1f} MB is over the {MAX_MB} MB limit for the "
                             "shipped model.")

    return files.atomic_write(rundir.final_model(target), save_small).stat().st_size / 1e6


def _member(source: str | Path) -> tuple[object, dict]:
    """A member of an ensemble and what the card says of it: a run directory (its released
    model: the recalibrated one when kept, else the selected checkpoint) or a released model
    folder (one with a metrics.json, e.g. a copy of an earlier default model)."""
    path = Path(source)
    metrics = model_folder.read_model_metrics(path)
    if metrics.get("results") and metrics.get("kind") != "ensemble":
        model = load_model(ModelRef(rundir.final_model(path), path.name, rundir.read_classes(path) or ()))
        config = rundir.read_config(path)
        return model, {"name": metrics["run"], "source": str(source), "config": config.to_dict(),
                       "params": int(model.count_params()), "stages": metrics.get("stages", []),
                       "train_minutes": metrics.get("train_minutes", 0), "member_of": metrics.get("member_of"),
                       "history": model_folder.read_histories(path).get(metrics["run"], [])}
    run = summarize(path)
    if run.error or run.config is None:
        raise ModelError(f"{source}: {run.error or 'neither a run directory nor a released model folder'}")
    model = load_model(ModelRef(released_file(run, source), run.name, rundir.read_classes(run.path)))
    stages = [stage(r) for r in lineage(run)]
    return model, {"name": run.name, "source": str(source), "config": run.config.to_dict(),
                   "params": int(model.count_params()), "stages": stages,
                   "train_minutes": round(sum(st["train_minutes"] for st in stages), 1), "history": run.metrics}


def _release_ensemble(sources: list, data: str, target: Path, log, shipped_as: str = DEFAULT_MODEL):
    """Several runs or released models averaged as one model (see :mod:`fer_core.models.ensemble`):
    its metrics and how its card is written (both by :func:`release`).

    Every member is loaded before anything in ``target`` is replaced, so an earlier default
    model can be a member (give a copy of its folder, whose ``history/`` then ships with it).
    Everything is measured on the saved file: each member alone on PublicTest and PrivateTest
    with the default TTA (what averaging buys), the ensemble with every TTA. Members'
    per-epoch histories are shipped under ``history/``.
    """
    loaded = [_member(s) for s in sources]
    classes = {tuple(m.output_shape[-1:]) for m, _ in loaded}
    if len(classes) != 1:
        raise ModelError("The members predict different numbers of classes; an ensemble needs the same classes.")
    first_cfg = TrainConfig.parse(loaded[-1][1]["config"])
    ds = load_dataset(data, merge=first_cfg.merge)
    target.mkdir(parents=True, exist_ok=True)
    size_mb = _save_shipped(build_ensemble([m for m, _ in loaded]), target, "the ensemble (fewer or smaller members): ")
    rundir.write_config(target, first_cfg)  # data and class merging, which every member shares
    rundir.write_classes(target, ds.class_names)
    # measured as shipped (kernels in float16): the card's numbers are those of the file
    ensemble = load_model(ModelRef(rundir.final_model(target), "ensemble", ds.class_names))
    infos = []
    for member, (_, info) in zip(ensemble_members(ensemble), loaded):
        info["results"] = {split: round(evaluate(member, ds, split, DEFAULT_TTA, name=info["name"]).metrics["accuracy"], 6)
                           for split in ("PublicTest", "PrivateTest")}
        log(f"member {info['name']}: PublicTest {info['results']['PublicTest']:.4f}, PrivateTest "
            f"{info['results']['PrivateTest']:.4f} ({DEFAULT_TTA})")
        infos.append(info)
    model_folder.write_histories(target, {info["name"]: info.pop("history") for info in infos})
    metrics = {"kind": "ensemble", "run": " + ".join(i["name"] for i in infos), "members": infos,
               "params": int(ensemble.count_params()), "size_mb": round(size_mb, 2),
               "train_minutes": round(sum(i["train_minutes"] for i in infos), 1),
               "default_tta": DEFAULT_TTA, "data": str(ds.source), **measure_release(ensemble, ds, log, shipped_as)}
    return metrics, card.render_ensemble, ds


def compare_members(sources: list, data: str, split: str = "PublicTest", log=print) -> list[dict]:
    """Validation accuracy (default TTA) of each candidate member alone and of every
    combination of two or more, averaged with equal weights as :func:`release` would
    ship them: the way to decide on PublicTest whether a new member helps, before the one
    release that reads PrivateTest. Each member runs once; combinations average its probabilities.

    Returns:
        Rows ``{"members": [names], "size", "accuracy", "correct", "faces"}``, best first.

    Raises:
        ModelError: a source is not a run or a released model; ``split`` is PrivateTest (it is
            read once, by the release).
    """
    if split == "PrivateTest":
        raise ModelError("Members are compared on PublicTest (or Training); PrivateTest is read once, by the release.")
    loaded = [_member(s) for s in sources]
    ds = load_dataset(data, merge=TrainConfig.parse(loaded[-1][1]["config"]).merge).subset(split)
    probs = []
    for model, info in loaded:
        probs.append(predict_proba(model, ds.images, DEFAULT_TTA))
        log(f"{info['name']}: {split} {float((probs[-1].argmax(1) == ds.labels).mean()):.4f} ({DEFAULT_TTA})")
    names = [info["name"] for _, info in loaded]
    rows = []
    for size in range(1, len(loaded) + 1):
        for combo in itertools.combinations(range(len(loaded)), size):
            correct = int((np.mean([probs[i] for i in combo], axis=0).argmax(1) == ds.labels).sum())
            rows.append({"members": [names[i] for i in combo], "size": size, "accuracy": correct / len(ds.labels),
                         "correct": correct, "faces": int(len(ds.labels))})
    return sorted(rows, key=lambda r: (-r["correct"], r["size"]))


def stage(run) -> dict:
    """What the card says of one training stage: its recipe (when it is one), command and compute."""
    recipe = find_recipe(run.config) if run.config else None
    cal = run.info.get(rundir.BN_RECORD, {})
    if recipe is not None:
        command, then = recipe.command(), recipe.follow_up()
    else:
        command = commands.train(run.config, f"data/runs/{run.name}") if run.config else None
        # a separate `recalibrate` call to repeat (training does it itself when recalibrate_bn is on)
        then = [commands.on_run("recalibrate", run.name)] if cal.get("by") == "recalibrate" and cal.get("kept") else []
    return {"run": run.name, "recipe": recipe.name if recipe else None, "epochs": len(run.metrics),
            "device": run.info.get("device"),
            "train_minutes": round(sum(m.get("epoch_seconds", 0) for m in run.metrics) / 60, 1),
            "command": command, "then": then}


def recompile(target: Path, data: str, log=print) -> dict:
    """Compile a released model for the inference engine again (:func:`compile_shipped`), keep
    what it chose in ``metrics.json`` and write the card again; returns the engine's record."""
    metrics = model_folder.read_model_metrics(target)
    if not metrics.get("results"):
        raise ModelError(f"{target}: no metrics.json with results; run 'python -m fer_core release' first.")
    ds = load_dataset(data, merge=rundir.read_config(target).merge)
    metrics["engine"] = compile_shipped(target, ds, metrics["results"], metrics.get("shipped_as") or DEFAULT_MODEL, log)
    metrics["engine"].pop("speed", None)  # the card's speed is measured again below, as the app runs it
    files.write_json(target / model_folder.MODEL_METRICS, metrics)
    rewrite_card(target, log)
    return metrics["engine"]


def rewrite_card(target: Path = DEFAULT_MODEL_DIR, log=print, note: str | None = None,
                 comparison: dict | None = None) -> dict:
    """Write a released model's card again from its ``metrics.json`` (no evaluation is repeated),
    with a new ``note`` for its Data section when one is given ("" removes it), and a new side-by-side
    ``comparison`` when one is given (:func:`fer_core.shipping.card.comparison_section`).

    The default TTA and the card's template may have changed since the release; the speed is
    measured again on this machine (on demo faces: latency does not depend on what the face shows).
    Returns the updated metrics.
    """
    metrics = model_folder.read_model_metrics(target)
    if not metrics.get("results"):
        raise ModelError(f"{target}: no metrics.json with results; run 'python -m fer_core release' first.")
    ref = ModelRef(rundir.final_model(target), metrics.get("shipped_as") or DEFAULT_MODEL,
                   rundir.read_classes(target) or ())
    engine = load_engine(ref)  # the artifact beside the model when there is one: the speed the app gets
    model = engine.keras
    cfg = rundir.read_config(target)
    metrics["default_tta"] = DEFAULT_TTA
    if note:
        metrics["note"] = note
    elif note is not None:
        metrics.pop("note", None)
    if comparison:
        metrics["comparison"] = comparison
    by_run = {r.run: r for r in list_recipes()}
    for st in metrics.get("stages", []):
        st.pop("recalibrate", None)
        recipe = by_run.get(st["run"])
        if recipe is not None:  # the stage's recipe, now that stages are named recipes
            st.update(recipe=recipe.name, command=recipe.command(), then=recipe.follow_up())
    metrics["speed"] = measure_speed(engine, make_demo_dataset(per_class=300, seed=3).images)
    log(f"speed: {metrics['speed']}")
    files.write_json(target / model_folder.MODEL_METRICS, metrics)
    text = (card.render_ensemble(metrics) if metrics.get("kind") == "ensemble" else
            card.render(metrics, cfg.to_dict(), [], card.describe_network(model)))
    files.write_text(target / model_folder.MODEL_CARD, text)
    return metrics
