"""``evaluate`` and ``predict``: a model measured on a data set, and run on photos and videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_core.cli.output import add_json_option, emit
from fer_core.config import load_settings
from fer_core.data.loading import load_dataset
from fer_core.device import quiet_tensorflow
from fer_core.errors import ConfigError, DataError
from fer_core.files import check_readable
from fer_core.inference.evaluate import evaluate_cached
from fer_core.inference.faces import DEFAULT_DETECTOR, DETECTORS
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from fer_core.inference.benchmark import RUNTIMES, entries_for, machine, run_benchmark
from fer_core.inference.engine import load_engine
from fer_core.inference.loader import resolve_model, speed_model
from fer_core.inference.photo import ImageResult, analyse
from fer_core.inference.video import (
    DEFAULT_FPS,
    VIDEO_TYPES,
    VideoResult,
    analyse_video,
    check_fps,
    check_out_file,
    is_video,
    limit_note,
    video_timing_of,
)


def evaluate(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model)
    ds = load_dataset(args.data or load_settings().active_source(), merge=ref.merge)
    res, cached = evaluate_cached(ref, ds, None if args.split == "all" else args.split, args.tta)
    out = res.to_json()

    def text() -> None:
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

    emit(args, out, text)
    return 0


def unreadable(path: str) -> str | None:
    """Why an input file cannot be read (the sentence predict prints for it), or None when it can.

    Checked before any model loads (20 s and more): a mistyped name is said at once."""
    try:
        check_readable(path, path)
    except DataError as exc:
        return str(exc)
    return None


def predict(args: argparse.Namespace) -> int:
    videos = [f for f in args.images if is_video(f)]
    if args.out and len(videos) != 1:
        raise ConfigError(f"--out names one annotated video, but {len(videos)} videos were given: "
                          "run predict once per video.", field="out")
    check_fps(args.fps)
    if args.out:
        check_out_file(Path(args.out))  # before any model loads or photo is analysed
    problems = {f: why for f in args.images if (why := unreadable(f))}
    if len(problems) == len(args.images):  # nothing to analyse: neither TensorFlow nor a model is loaded
        return _unreadable_only(args, problems)
    quiet_tensorflow()
    readable = [f for f in args.images if f not in problems]
    videos = [f for f in readable if is_video(f)]
    # photos: the app's model (the most accurate); videos: the fast one when it is shipped
    ref = resolve_model(args.model) if len(videos) < len(readable) else None
    video_ref = (resolve_model(args.model or speed_model()) if videos else None) or ref
    ref = ref or video_ref
    model = load_engine(ref)
    video_model = model if video_ref == ref else load_engine(video_ref)
    for note in {m.note for m in (model, video_model) if m.note}:  # the engine fell back to Keras: say why
        print(note, file=sys.stderr, flush=True)
    photos = analyse([(f, f) for f in readable if not is_video(f)], model, ref.classes,
                     detect="never" if args.no_detect else "auto", tta=args.tta, explain=args.explain,
                     detector=args.detector, occlude=args.explain and args.json)
    clips = {f: _video(f, video_model, video_ref.classes, args) for f in videos}
    missed = {f: VideoResult(f, video_ref.classes, args.fps, args.detector, error=why) if is_video(f) else
              ImageResult(f, error=why) for f, why in problems.items()}
    results = [missed.get(f) or clips.get(f) or photos.pop(0) for f in args.images]
    failed = any(getattr(r, "error", None) for r in results)

    def text() -> None:
        models = ref.name if video_ref == ref else f"{ref.name} (photos), {video_ref.name} (videos)"
        print(f"model: {models}  TTA: {args.tta}  detector: {args.detector}")
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

    docs = [{**r.to_json(), "model": video_ref.name} if isinstance(r, VideoResult) else
            {**r.to_json(ref.classes, explain=args.explain), "model": ref.name} for r in results] if args.json else None
    emit(args, docs[0] if docs and len(args.images) == 1 and videos else docs, text)
    return 1 if failed else 0


def _unreadable_only(args: argparse.Namespace, problems: dict[str, str]) -> int:
    """Report every input as unreadable, as predict reports a bad file among good ones (exit 1),
    with no model loaded: the JSON's ``model`` is null."""
    docs = [{**(VideoResult(f, (), args.fps, args.detector, error=why).to_json() if is_video(f) else
                ImageResult(f, error=why).to_json(())), "model": None} for f, why in problems.items()]

    def text() -> None:
        for f, why in problems.items():
            print(f"{f}: error: {why}")
        print("Nothing was analysed: check the file names (and that you may read the files).", file=sys.stderr)

    emit(args, docs[0] if len(docs) == 1 and is_video(docs[0]["file"]) else docs, text)
    return 1


def _video(path: str, model, classes, args: argparse.Namespace) -> VideoResult:
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


def benchmark(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ConfigError(f"--rounds {args.rounds}: give at least 1.", field="rounds")
    names = args.model or [m for m in ("default", speed_model()) if m]
    refs = [resolve_model(name) for name in names]
    runtimes = RUNTIMES if args.runtime == "all" else (args.runtime,)
    entries = [e for ref in refs for e in entries_for(ref, runtimes)]
    ds = load_dataset(args.data or load_settings().active_source(), merge=refs[0].merge)
    part = ds.subset(args.split)
    if not len(part):
        raise ConfigError(f"{ds.source}: the {args.split} split has no faces; choose another --split.", field="split")
    log = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    rows = run_benchmark(entries, part.images, part.labels, args.rounds, log)
    doc = {"models": rows, "machine": machine(), "data": str(ds.source), "split": args.split, "faces": len(part),
           "rounds": args.rounds}

    def text() -> None:
        print(f"{doc['machine']}; {args.split} ({len(part):,} faces); speeds: best of {args.rounds} interleaved rounds")
        print("| model | runtime | accuracy | with flip | faces/s | ms per face | MB | parameters |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['runtime']} | {r['accuracy']:.2%} | {r['accuracy_flip']:.2%} | "
                  f"{r['faces_per_s']:,} | {r['ms_per_face']:.2f} | {r['size_mb']:.2f} | {r['params']:,} |")

    emit(args, doc, text)
    return 0


def _add_model_options(p: argparse.ArgumentParser, tta_note: str) -> None:
    """--model, --tta and --json, shared by evaluate and predict."""
    p.add_argument("--model", help="a .keras file, a run directory or run name, 'default' or 'fast' (default: the "
                                   "app's model: the shipped one, else the newest finished run; for videos the "
                                   "shipped fast model when there is one)")
    p.add_argument("--tta", default=DEFAULT_TTA, choices=TTA_MODES, help=f"test-time augmentation ({tta_note})")
    add_json_option(p)


def add_commands(sub) -> None:
    ev = sub.add_parser("evaluate", help="accuracy, per-class report and confusion matrix of a model")
    _add_model_options(ev, f"default {DEFAULT_TTA}, as in the app and the model card")
    ev.add_argument("--data", help="data source (default: the app's active data set)")
    ev.add_argument("--split", default="PrivateTest", help="Training, PublicTest, PrivateTest or all")
    ev.set_defaults(func=evaluate)

    bm = sub.add_parser("benchmark", help="every model by runtime (the app's engine and Keras): accuracy, faces/s, "
                        "ms per face, size")
    bm.add_argument("--model", action="append", help="a model (repeatable; default: 'default', and 'fast' when shipped)")
    bm.add_argument("--data", help="data source (default: the app's active data set)")
    bm.add_argument("--split", default="PrivateTest", help="Training, PublicTest or PrivateTest (default PrivateTest)")
    bm.add_argument("--runtime", default="all", choices=("all", *RUNTIMES), help="which runtimes (default all)")
    bm.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds (default 3)")
    add_json_option(bm)
    bm.set_defaults(func=benchmark)

    pr = sub.add_parser("predict", help="find the faces in photos and videos and classify each one")
    pr.add_argument("images", nargs="+", metavar="IMAGE|VIDEO",
                    help=f"photos, and videos ({', '.join(VIDEO_TYPES)}): faces followed as tracks over time")
    _add_model_options(pr, f"default {DEFAULT_TTA}, as in the app")
    pr.add_argument("--no-detect", action="store_true", help="take each whole image as the face")
    pr.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                    help=f"the face detector (default {DEFAULT_DETECTOR}: finds turned and tilted faces and turns "
                         "them upright; haar: OpenCV's cascades)")
    pr.add_argument("--explain", action="store_true", help="with --json: each face's Grad-CAM map (48x48, 0-1) "
                    "under 'gradcam' and its occlusion-sensitivity map under 'occlusion' (or null and the reason "
                    "under 'gradcam_note' / 'occlusion_note')")
    pr.add_argument("--fps", type=float, default=DEFAULT_FPS,
                    help=f"videos: frames analysed per second of video (default {DEFAULT_FPS:g})")
    pr.add_argument("--out", metavar="ANNOTATED.webm", help="one video: also write it with every face boxed and "
                    "labelled (WebM, VP8)")
    pr.set_defaults(func=predict)
