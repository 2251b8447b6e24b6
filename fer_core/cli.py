"""Command-line interface: ``python -m fer_core <command> ...``.

Every command prints a clear one-line error (exit status 2) instead of a traceback when
the input is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import jobs
from .jobs import RUNNERS
from .calibrate import recalibrate_run
from .config import load_settings, runs_dir
from .data import load_dataset
from .device import device_line, quiet_tensorflow
from .errors import ConfigError, DataError, FerError
from .evaluate import evaluate_cached
from .export import FORMATS, QUANTIZE, export_model
from .faces import DEFAULT_DETECTOR, DETECTORS
from .fmt import fmt_seconds
from .infer import DEFAULT_MODEL_DIR, load_model, resolve_model
from .models import list_models
from .predict import analyse
from .recipes import get_recipe, list_recipes
from .release import compare_members, release, release_ensemble, rewrite_card
from .rundir import MODEL_CARD, NOTE, TAGS, read_info, read_metrics
from .train import train
from .trainconfig import OPTIMIZERS, SCHEDULES, TrainConfig
from .tta import DEFAULT_TTA, TTA_MODES
from .validation import config_notes, validate_config
from .video import (DEFAULT_FPS, VIDEO_TYPES, VideoResult, analyse_video, check_fps, is_video, limit_note,
                    video_timing_of)


def _data_summary(args: argparse.Namespace) -> int:
    ds = load_dataset(args.source, merge=args.merge, skip_bad=args.skip_bad, use_cache=not args.no_cache)
    summary = ds.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Source: {summary['source']}  ({summary['num_images']} images, {len(ds.class_names)} classes)")
    if ds.skipped:
        print(f"Skipped {ds.skipped} bad rows/files; first: {'; '.join(ds.problems[:3])}")
    width = max(len(c) for c in ds.class_names)
    splits = list(summary["counts"])
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>11}" for s in splits) + f"  {'total':>7}")
    for c in ds.class_names:
        row = [summary["counts"][s][c] for s in splits]
        print(f"{c:<{width}}  " + "  ".join(f"{n:>11,}" for n in row) + f"  {sum(row):>7,}")
    totals = [sum(summary["counts"][s].values()) for s in splits]
    print(f"{'total':<{width}}  " + "  ".join(f"{n:>11,}" for n in totals) + f"  {sum(totals):>7,}")
    return 0


def _models(args: argparse.Namespace) -> int:
    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    print(f"{'name':<15} {'parameters':>12}  {'input':>5}  description")
    for m in models:
        print(f"{m['name']:<15} {m['params']:>12,}  {m['crop']:>2}x{m['crop']:<2}  {m['description']}")
    print("\nParameters are for each preset's own configuration: its input crop (the dense layers grow with it) "
          "and default width. A run's own count is in its run.json and on the Runs page.")
    return 0


def _config_from_args(args: argparse.Namespace):
    """The training config the options describe (a recipe or an architecture, then the options),
    checked by the one validation every surface uses."""


    if not args.arch and not args.recipe:
        raise FerError("Give --recipe (see 'python -m fer_core recipes') or --arch (a model name from "
                       "'python -m fer_core models', or layer notation).")
    if args.arch and args.recipe:
        raise FerError("Give --recipe or --arch, not both: a recipe names its architecture.")
    overrides = {k: v for k, v in {
        "data": args.data, "merge": args.merge, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.lr, "optimizer": args.optimizer, "schedule": args.schedule, "seed": args.seed,
        "init_from": args.init_from,
    }.items() if v is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise FerError(f"--set {item!r}: write it as KEY=VALUE, e.g. --set flip=true.")
        overrides[key.strip()] = value.strip()
    if args.recipe:
        data = overrides.pop("data", None) or os.environ.get("FER2013_DIR")
        if not data:
            raise FerError("Give --data (or set FER2013_DIR): a recipe names everything but the data set.")
        return _noted(validate_config({**get_recipe(args.recipe).train_config(data).to_dict(), **overrides},
                                      trusted=True))
    else:
        cfg = TrainConfig.for_model(args.arch, **overrides)
    return _noted(validate_config(cfg, trusted=True))


def _noted(cfg: TrainConfig) -> TrainConfig:
    """The configuration, after printing (to stderr) what it does that may surprise."""
    for name, note in config_notes(cfg).items():
        print(f"note ({name}): {note}", file=sys.stderr)
    return cfg


def _run_out(args: argparse.Namespace) -> str | None:
    """Where a new run goes: --out, else a recipe's own run name under data/runs, else a new folder."""
    if args.out:
        return args.out
    return str(runs_dir() / get_recipe(args.recipe).run) if args.recipe else None


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.arch or args.recipe or args.set or args.out:
            raise FerError("--resume continues a run with its own configuration: give only --epochs N to extend it.")
        run_dir = train(run_dir=args.resume, resume=True, epochs=args.epochs, verbose=1)
    else:
        run_dir = train(_config_from_args(args), _run_out(args), verbose=1)
    rows = read_metrics(run_dir)
    best = max(rows, key=lambda r: r.get("val_accuracy", 0)) if rows else {}
    print(f"run: {run_dir}  epochs: {len(rows)}  best val_accuracy: {best.get('val_accuracy', float('nan')):.4f}"
          f" (epoch {best.get('epoch', '-')})")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    if args.jobs_command == "work":
        return jobs.work(args.id, tee=args.tee)
    if args.jobs_command == "repair":
        backup, ids = jobs.repair()
        print((f"the damaged store is kept as {backup}; " if backup else "") +
              f"rebuilt {len(ids)} job(s) from the run directories under {runs_dir()}")
        return 0
    if args.jobs_command == "submit":
        with jobs.JobStore() as store:
            job_id = jobs.submit(_config_from_args(args), store, name=args.name or "", note=args.note or "",
                                 tags=args.tag, where=args.runner, trusted=True)
            job = store.get(job_id)
        print(json.dumps({"id": job_id, "status": job.status.value, "run_dir": job.run_dir, "runner": job.runner})
              if args.json else f"{job_id}")
        return 0
    if args.jobs_command == "sweep":
        return _sweep(args)
    if args.jobs_command == "cluster":
        view = jobs.cluster_view()
        if args.json:
            print(json.dumps(view, indent=2))
        else:
            print(f"runner: {view['runner']}" + (f" at {view['address']}" if view["address"] else " (this machine)"))
            print(f"nodes: {view['nodes']}; CPUs {view['cpus']:g}, GPUs {view['gpus']:g}; slots for jobs: {view['slots']}")
            if view.get("free_cpus") is not None:
                print(f"free: CPUs {view['free_cpus']:g}, GPUs {view['free_gpus']:g}")
            for node, n in view["jobs_per_node"].items():
                print(f"  {node}: {n} job(s)")
        return 0
    with jobs.open_store() as store:  # every look at the store notices dead workers and starts queued jobs
        if args.jobs_command == "list":
            listed = store.list(sweep=args.sweep)
            if args.json:
                print(json.dumps([j.to_dict() for j in listed], indent=2))
                return 0
            print(f"{'id':>4}  {'status':<11} {'progress':>8}  {'elapsed':>8}  {'eta':>8}  {'val_acc':>7}  {'runner':<6} "
                  f"{'sweep':>5}  arch / data")
            for j in listed:
                acc = j.metrics.get("val_accuracy")
                print(f"{j.id:>4}  {j.status.value:<11} {j.progress:>8.0%}  {fmt_seconds(j.elapsed):>8}  "
                      f"{fmt_seconds(j.eta):>8}  {'-' if acc is None else f'{acc:.4f}':>7}  {j.runner:<6} "
                      f"{j.sweep or '-':>5}  {j.config.get('arch')} / {j.config.get('data')}")
            return 0
        job = store.get(_job_id(args.id))
        if args.jobs_command == "show":
            shown = {**job.to_dict(), **_run_labels(job.run_dir)}
            if args.json:
                print(json.dumps(shown, indent=2))
            else:
                for key, value in shown.items():
                    if key != "config":
                        print(f"{key:>16}: {value}")
            return 0
        if args.jobs_command == "cancel":
            state = store.cancel(job.id)
            print(f"job {job.id}: " + ("cancelled" if state == jobs.JobStatus.CANCELLED
                                       else "stopping at the next batch; its last checkpoint is kept"))
            return 0
        if args.jobs_command == "resume":
            if args.epochs is not None:
                jobs.Limits.from_env().check_epochs(args.epochs)
            store.resume(job.id, epochs=args.epochs, max_waiting=jobs.Limits.from_env().queued)
            jobs.schedule(store)
            print(f"job {job.id}: {store.get(job.id).status.value}")
            return 0
        if args.jobs_command == "delete":
            kept = store.delete(job.id)
            print(f"job {job.id}: deleted with its run's files" + (
                f"; kept {job.run_dir} with what FER Studio did not write there: {', '.join(kept[:5])}"
                + (" ..." if len(kept) > 5 else "") if kept else ""))
            return 0
        if args.jobs_command == "logs":
            print(jobs.job_log(job, tail=args.tail), end="")
            return 0
    return 2


def _sweep(args: argparse.Namespace) -> int:
    """``jobs sweep``: the grid of --arch (or --recipe) x --set values x --seeds, as one sweep."""
    if bool(args.arch) == bool(args.recipe):
        raise FerError("Give --arch A[,B...] or --recipe R (one of them): the sweep's base.")
    data = args.data or os.environ.get("FER2013_DIR")
    if not data:
        raise FerError("Give --data (or set FER2013_DIR).")
    fixed = {"data": data, **({"epochs": args.epochs} if args.epochs else {})}
    if args.recipe:
        recipe = get_recipe(args.recipe)
        archs = None

        def base(arch):
            return {**recipe.train_config(data).to_dict(), **fixed}
    else:
        archs = [a.strip() for a in args.arch.split(",") if a.strip()]

        def base(arch):
            return TrainConfig.for_model(arch, **fixed).to_dict()
    sweep = jobs.make_sweep(base, archs, jobs.parse_ints(args.seeds) if args.seeds else None,
                            jobs.parse_values(args.set))
    sweep_id, ids = jobs.submit_sweep(sweep, where=args.runner, note=args.note or "", tags=args.tag)
    if args.json:
        print(json.dumps({"sweep": sweep_id, "jobs": ids, "configurations": [label for label, _ in sweep.configs]}))
    else:
        print(f"sweep {sweep_id}: jobs {', '.join(map(str, ids))}")
    return 0


def _run_labels(run_dir: str) -> dict:
    """The note and tags given when the job was submitted (empty when none or when run.json is unreadable)."""
    try:
        info = read_info(run_dir)
    except FerError:
        info = {}
    return {"note": str(info.get(NOTE, "")), "tags": list(info.get(TAGS, []))}


def _job_id(value: int) -> int:
    if not 0 < value < 2 ** 63:
        raise FerError(f"There is no job {value}; 'python -m fer_core jobs list' shows them.")
    return value


def _recipes(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    if args.json:
        print(json.dumps([{"name": r.name, "version": r.version, "description": r.description, "run": r.run,
                           "then": list(r.then), "config": r.config} for r in recipes], indent=2))
        return 0
    print(f"{'recipe':<20} {'version':>7}  {'arch':<8} {'epochs':>6}  description")
    for r in recipes:
        print(f"{r.name:<20} {r.version:>7}  {r.config['arch']:<8} {r.config['epochs']:>6}  {r.description}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model)
    ds = load_dataset(args.data or load_settings().active_source(), merge=ref.merge)
    res, cached = evaluate_cached(ref, ds, None if args.split == "all" else args.split, args.tta)
    out = res.to_json()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"model: {ref.name} ({ref.path})\ndata: {ds.source}  split: {res.split}  images: {out['num_images']}  "
          f"TTA: {res.tta}" + ("  (cached)" if cached else ""))
    print(f"accuracy {out['accuracy']:.4f}  macro F1 {out['macro_f1']:.4f}  weighted F1 {out['weighted_f1']:.4f}")
    width = max(len(c) for c in res.classes)
    print(f"{'class':<{width}}  precision  recall      f1  support")
    for c, m in out["per_class"].items():
        print(f"{c:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:7d}")
    print("confusion matrix (rows true, columns predicted):")
    print(" " * (width + 2) + " ".join(f"{c[:5]:>5}" for c in res.classes))
    for c, row in zip(res.classes, out["confusion_matrix"]):
        print(f"{c:<{width}}  " + " ".join(f"{n:5d}" for n in row))
    return 0


def _predict(args: argparse.Namespace) -> int:
    videos = [f for f in args.images if is_video(f)]
    if args.out and len(videos) != 1:
        raise ConfigError(f"--out names one annotated video, but {len(videos)} videos were given: "
                          "run predict once per video.", field="out")
    check_fps(args.fps)
    ref = resolve_model(args.model)
    model = load_model(ref)
    photos = analyse([(f, f) for f in args.images if not is_video(f)], model, ref.classes,
                     detect="never" if args.no_detect else "auto", tta=args.tta, explain=args.explain,
                     detector=args.detector)
    clips = {f: _predict_video(f, model, ref.classes, args) for f in videos}
    results = [clips[f] if f in clips else photos.pop(0) for f in args.images]
    failed = any(getattr(r, "error", None) for r in results)
    if args.json:
        docs = [r.to_json() if isinstance(r, VideoResult) else r.to_json(ref.classes, explain=args.explain)
                for r in results]
        print(json.dumps(docs[0] if len(args.images) == 1 and videos else docs, indent=2))
        return 1 if failed else 0
    print(f"model: {ref.name}  TTA: {args.tta}  detector: {args.detector}")
    for r in results:
        if r.error:
            print(f"{r.file}: error: {r.error}")
        elif isinstance(r, VideoResult):
            _print_video(r, args.out)
        else:
            if not r.faces:
                print(f"{r.file}: no face found (try --no-detect if the image is a face crop)")
            for i, f in enumerate(r.faces, 1):
                top = sorted(zip(ref.classes, f.proba), key=lambda t: -t[1])[:3]
                print(f"{r.file}: face {i} at {f.box.as_list()}: {f.label} "
                      f"({', '.join(f'{c} {p:.0%}' for c, p in top)})")
    return 1 if failed else 0


def _predict_video(path: str, model, classes, args: argparse.Namespace) -> VideoResult:
    """The video's result; one with ``error`` set when it cannot be read (like a bad image)."""
    def progress(done: float, total: float | None) -> None:
        if sys.stderr.isatty():
            print(f"\r{path}: {done:.0f} s" + (f" of {total:.0f} s" if total else "") + " analysed",
                  end="", file=sys.stderr, flush=True)

    try:
        duration, rate = video_timing_of(path)
        note = limit_note(duration, args.fps, rate)
        if note:  # said before the work starts
            print(f"{path}: {note}", file=sys.stderr, flush=True)
        result = analyse_video(path, model, classes, fps=args.fps, tta=args.tta, detector=args.detector,
                               out=args.out, progress=progress)
    except DataError as exc:
        return VideoResult(path, classes, args.fps, args.detector, error=str(exc))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return result


def _print_video(r: VideoResult, out: str | None) -> None:
    span = r.frames[-1].t if r.frames else 0.0
    tracks = r.tracks()
    print(f"{r.file}: {r.size[0]}x{r.size[1]}, {len(r.frames)} frames analysed over {span:.1f} s "
          f"({r.fps:g} per second), {len(tracks)} face track(s)" + (f"; {r.note}" if r.note else ""))
    for tr in tracks:
        shares = sorted(tr["share"].items(), key=lambda kv: -kv[1])
        print(f"  track {tr['track']}: {tr['first']:.1f}-{tr['last']:.1f} s, {tr['frames']} frames: mostly "
              f"{tr['dominant']} ({', '.join(f'{c} {v:.0%}' for c, v in shares if v > 0)})")
    if out:
        print(f"  annotated video: {out}")


def _release(args: argparse.Namespace) -> int:
    if len(args.run_dirs) == 1:
        metrics = release(args.run_dirs[0], args.data, note=args.note)
    else:
        metrics = release_ensemble(args.run_dirs, args.data, note=args.note)
    print(f"released {' + '.join(args.run_dirs)} as the default model ({metrics['size_mb']} MB); "
          f"see {DEFAULT_MODEL_DIR / MODEL_CARD}")
    return 0


def _export(args: argparse.Namespace) -> int:
    result = export_model(args.model, args.format, args.out, args.quantize, log=lambda line: print(line, flush=True))
    print(f"wrote {result.folder}: {result.graph.name} ({result.size_bytes / 1e6:.2f} MB), classes.json, "
          f"export.json in {fmt_seconds(result.seconds)}; input 'faces' uint8 (N, 48, 48, 1), output "
          "'probabilities' (N, classes)")
    return 0


def _members(args: argparse.Namespace) -> int:
    rows = compare_members(args.sources, args.data, args.split, log=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'accuracy':>8}  {'correct':>13}  members ({args.split}, TTA {DEFAULT_TTA}, equal weights)")
    for r in rows:
        print(f"{r['accuracy']:8.4f}  {r['correct']:>5,} of {r['faces']:,}  {' + '.join(r['members'])}")
    return 0


def _card(args: argparse.Namespace) -> int:
    folder = Path(args.model_dir) if args.model_dir else DEFAULT_MODEL_DIR
    rewrite_card(folder, note=args.note)
    print(f"wrote {folder / MODEL_CARD} from its metrics.json")
    return 0


def _recalibrate(args: argparse.Namespace) -> int:
    rec = recalibrate_run(args.run_dir, args.data, args.tta,
                          log=lambda line: print(line, file=sys.stderr if args.json else sys.stdout))
    print(json.dumps(rec, indent=2) if args.json else
          f"{args.run_dir}: PublicTest accuracy {rec['val_accuracy_before']:.4f} -> {rec['val_accuracy_after']:.4f} "
          f"({rec['tta']}); " + ("model.keras is now the recalibrated model" if rec["kept"] else
                                  "model.keras stays the selected checkpoint"))
    return 0


def _add_model_options(p: argparse.ArgumentParser, tta: str, tta_note: str) -> None:
    """--model, --tta and --json, shared by evaluate and predict."""
    p.add_argument("--model", help="a .keras file, a run directory or run name, or 'default' (default: the app's "
                                   "model: the shipped one, else the newest finished run)")
    p.add_argument("--tta", default=tta, choices=TTA_MODES, help=f"test-time augmentation ({tta_note})")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data source ('demo', CSV or image folder)")
    p.add_argument("--recipe", help="a named recipe (see 'python -m fer_core recipes'); the other options then change it")
    p.add_argument("--arch", help="model name or layer notation, e.g. CBCBPD-CBCBPD-FBDF")
    p.add_argument("--epochs", type=int)
    p.add_argument("--merge", help="class merging, e.g. disgust=angry")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--seed", type=int)
    p.add_argument("--init-from", metavar="MODEL", help="start from a trained model's weights (a .keras file, run "
                                                       "directory or run name): fine-tuning, a second schedule")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set flip=true --set conv_widths=32,64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_core", description="FER Studio command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect data sets").add_subparsers(dest="data_command", required=True)
    summary = data.add_parser("summary", help="counts per split and class")
    summary.add_argument("source", help="'demo', a FER2013 CSV (.csv/.csv.gz) or an image folder")
    summary.add_argument("--merge", default="", help="class merging, e.g. 'disgust=angry'")
    summary.add_argument("--skip-bad", action="store_true", help="skip and count bad rows/files")
    summary.add_argument("--no-cache", action="store_true", help="parse the source again")
    summary.add_argument("--json", action="store_true", help="print JSON")
    summary.set_defaults(func=_data_summary)

    recipes = sub.add_parser("recipes", help="list the named training recipes")
    recipes.add_argument("--json", action="store_true", help="print JSON")
    recipes.set_defaults(func=_recipes)

    models = sub.add_parser("models", help="list the registered architectures")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_models)

    tr = sub.add_parser("train", help="train a model and write a run directory")
    _add_train_options(tr)
    tr.add_argument("--out", help="run directory (default: a new folder under data/runs)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (with --epochs N: "
                    "extend it to N epochs in all; a cosine schedule continues as if N had been planned)")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="accuracy, per-class report and confusion matrix of a model")
    _add_model_options(ev, DEFAULT_TTA, f"default {DEFAULT_TTA}, as in the app and the model card")
    ev.add_argument("--data", help="data source (default: the app's active data set)")
    ev.add_argument("--split", default="PrivateTest", help="Training, PublicTest, PrivateTest or all")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="find the faces in photos and videos and classify each one")
    pr.add_argument("images", nargs="+", metavar="IMAGE|VIDEO",
                    help=f"photos, and videos ({', '.join(VIDEO_TYPES)}): faces followed as tracks over time")
    _add_model_options(pr, DEFAULT_TTA, f"default {DEFAULT_TTA}, as in the app")
    pr.add_argument("--no-detect", action="store_true", help="take each whole image as the face")
    pr.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                    help=f"the face detector (default {DEFAULT_DETECTOR}: finds turned and tilted faces and turns "
                         "them upright; haar: OpenCV's cascades)")
    pr.add_argument("--explain", action="store_true", help="with --json: each face's Grad-CAM map (48x48, 0-1) "
                    "under 'gradcam', or null and the reason under 'gradcam_note'")
    pr.add_argument("--fps", type=float, default=DEFAULT_FPS,
                    help=f"videos: frames analysed per second of video (default {DEFAULT_FPS:g})")
    pr.add_argument("--out", metavar="ANNOTATED.webm", help="one video: also write it with every face boxed and "
                    "labelled (WebM, VP8)")
    pr.set_defaults(func=_predict)

    rel = sub.add_parser("release", help="ship a run (or several, averaged as one ensemble) as the default model: "
                         "copy, evaluate, write the model card")
    rel.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                     help="a run directory; several: an ensemble of them (a released model's folder may be one)")
    rel.add_argument("--data", required=True, help="FER2013 (for PublicTest and PrivateTest)")
    rel.add_argument("--note", default="", help="a sentence for the card's Data section: how the model was chosen, "
                     "earlier candidates measured on PrivateTest")
    rel.set_defaults(func=_release)

    exp = sub.add_parser("export", help="write a model as ONNX, TFLite or a TensorFlow SavedModel (uint8 faces in, "
                         "probabilities out, preprocessing inside)")
    exp.add_argument("model", metavar="RUN|default", help="a run directory or name, a .keras file, or 'default'")
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--quantize", default="none", choices=QUANTIZE,
                     help="dynamic: int8 weights; float16: half-float weights (ONNX and TFLite; default none)")
    exp.add_argument("--out", metavar="FOLDER", help="the export folder (default: MODEL-FORMAT[-QUANTIZE] here)")
    exp.set_defaults(func=_export)

    mem = sub.add_parser("members", help="candidate ensemble members: PublicTest accuracy of each and of every "
                         "combination (PrivateTest is never read), to choose before a release")
    mem.add_argument("sources", nargs="+", metavar="RUN_DIR", help="run directories or released model folders")
    mem.add_argument("--data", required=True, help="FER2013 (or the data set the members were trained on)")
    mem.add_argument("--split", default="PublicTest", choices=("PublicTest", "Training"))
    mem.add_argument("--json", action="store_true", help="print JSON")
    mem.set_defaults(func=_members)

    crd = sub.add_parser("card", help="write a released model's card again from its metrics.json (after a "
                         "change of the default TTA or of the card template; nothing is evaluated again)")
    crd.add_argument("model_dir", nargs="?", help="the model folder (default: the shipped model)")
    crd.add_argument("--note", help="replace the card's note on how the model was chosen ('' removes it)")
    crd.set_defaults(func=_card)

    cal = sub.add_parser("recalibrate", help="re-estimate a finished run's batch-norm statistics on its clean "
                         "Training faces; kept only if PublicTest accuracy does not drop")
    cal.add_argument("run_dir")
    cal.add_argument("--data", help="the data source (default: the one the run was trained on)")
    cal.add_argument("--tta", choices=TTA_MODES, default=DEFAULT_TTA,
                     help=f"TTA for the PublicTest comparison (default {DEFAULT_TTA}, as in the app)")
    cal.add_argument("--json", action="store_true", help="print JSON")
    cal.set_defaults(func=_recalibrate)

    jobs = sub.add_parser("jobs", help="background training jobs").add_subparsers(dest="jobs_command", required=True)
    submit = jobs.add_parser("submit", help="queue a training job; prints its id")
    _add_train_options(submit)
    submit.add_argument("--name", help="the run's name (its folder under data/runs; default: a time stamp)")
    submit.add_argument("--note", help="a note kept with the run (what this run tries), shown on the Runs page")
    submit.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="a tag to group runs by on the Runs page (repeat, or separate with commas)")
    runner_help = ("where it runs: 'local' (this machine) or 'ray' (the cluster at FER_RAY_ADDRESS or the app's "
                   "setting); default: ray when a cluster is set, else local")
    submit.add_argument("--runner", choices=RUNNERS, help=runner_help)
    sweep = jobs.add_parser("sweep", help="submit a grid of configurations as one sweep (prints its id and the jobs')")
    sweep.add_argument("--data", help="data source (default: FER2013_DIR)")
    sweep.add_argument("--arch", help="architectures, separated by commas")
    sweep.add_argument("--recipe", help="or a recipe as the base (N seeds of this recipe)")
    sweep.add_argument("--seeds", help="seeds, separated by commas, e.g. 0,1,2")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                       help="a setting and its values, e.g. --set label_smoothing=0,0.1 (repeat for more)")
    sweep.add_argument("--epochs", type=int)
    sweep.add_argument("--note", help="a note kept with every run of the sweep")
    sweep.add_argument("--tag", action="append", default=[], metavar="TAG")
    sweep.add_argument("--runner", choices=RUNNERS, help=runner_help)
    sweep.add_argument("--json", action="store_true", help="print JSON")
    cluster = jobs.add_parser("cluster", help="where jobs run: the runner, CPUs and GPUs (total, free), jobs per node")
    cluster.add_argument("--json", action="store_true", help="print JSON")
    submit.add_argument("--json", action="store_true", help="print JSON")
    listing = jobs.add_parser("list", help="all jobs, newest first")
    listing.add_argument("--sweep", type=int, help="only the jobs of this sweep")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = jobs.add_parser("show", help="one job in full")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("cancel", "stop a job at its next batch (or drop it from the queue)"),
                       ("resume", "queue a cancelled, failed or interrupted job again"),
                       ("delete", "forget a job that is not running and remove its run directory"),
                       ("work", "run a claimed job in this process (used by the runner)")):
        jobs.add_parser(name, help=text).add_argument("id", type=int)
    jobs.choices["resume"].add_argument("--epochs", type=int, help="extend the run to N epochs in all")
    jobs.choices["work"].add_argument("--tee", action="store_true", help="also append the output to the run's "
                                      "log.txt (a cluster keeps the output elsewhere)")
    jobs.add_parser("repair", help="rebuild a damaged job store from the run directories (keeps a backup)")
    logs = jobs.add_parser("logs", help="the end of a job's log")
    logs.add_argument("id", type=int)
    logs.add_argument("--tail", type=int, default=20_000, help="bytes from the end (default 20000)")
    for p in jobs.choices.values():
        p.set_defaults(func=_jobs)
    return parser


#: Commands that run a model: TensorFlow is imported quietly first (see fer_core.device).
TF_COMMANDS = {"train", "evaluate", "predict", "release", "recalibrate", "card", "models", "export", "members"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in TF_COMMANDS or getattr(args, "jobs_command", None) == "work":
            quiet_tensorflow()
        if args.command == "train":
            print(device_line(), flush=True)
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
