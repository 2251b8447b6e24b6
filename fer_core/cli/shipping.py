"""``release``, ``members``, ``card`` and ``export``: a trained model shipped, documented and exported."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from fer_core.cli.output import add_json_option, emit
from fer_core.config import load_settings
from fer_core.errors import ConfigError
from fer_core.fmt import fmt_seconds
from fer_core.inference.forward import DEFAULT_TTA
from fer_core.inference.loader import DEFAULT_MODEL, FAST_MODEL, shipped_folder
from fer_core.runs.model_folder import MODEL_CARD
from fer_core.shipping.export import FORMATS, QUANTIZE, export_model
from fer_core.shipping.release import compare_members, member_folder, recompile, release, rewrite_card
from fer_core.shipping.warmup import warm


def release_command(args: argparse.Namespace) -> int:
    folder = shipped_folder(args.shipped_as)
    if args.member:
        if len(args.run_dirs) != 1:
            raise ConfigError("--member names a member of one ensemble: give only that ensemble ('default' or its "
                              "folder).", field="member")
        ensemble = args.run_dirs[0]
        ensemble = shipped_folder(ensemble) if ensemble in (DEFAULT_MODEL, FAST_MODEL) else Path(ensemble)
        with tempfile.TemporaryDirectory(prefix="fer-member-") as tmp:
            source = member_folder(ensemble, args.member, Path(tmp) / args.member)
            metrics = release([source], args.data, target=folder, note=args.note, shipped_as=args.shipped_as)
        args.run_dirs = [f"{args.member} (a member of {ensemble.name})"]
    else:
        metrics = release(args.run_dirs, args.data, target=folder, note=args.note, shipped_as=args.shipped_as)
    print(f"released {' + '.join(args.run_dirs)} as the {args.shipped_as} model ({metrics['size_mb']} MB); "
          f"see {folder / MODEL_CARD}")
    return 0


def compile_command(args: argparse.Namespace) -> int:
    name = args.model_dir or DEFAULT_MODEL
    folder = shipped_folder(name) if name in (DEFAULT_MODEL, FAST_MODEL) else Path(name)
    engine = recompile(folder, args.data, log=lambda line: print(line, flush=True))
    print(f"{folder.name}: the app runs it with {engine['runtime']}; see {folder / MODEL_CARD}")
    return 0


def export(args: argparse.Namespace) -> int:
    result = export_model(args.model, args.format, args.out, args.quantize, log=lambda line: print(line, flush=True))
    print(f"wrote {result.folder}: {result.graph.name} ({result.size_bytes / 1e6:.2f} MB), classes.json, "
          f"export.json in {fmt_seconds(result.seconds)}; input 'faces' uint8 (N, 48, 48, 1), output "
          "'probabilities' (N, classes)")
    return 0


def members(args: argparse.Namespace) -> int:
    rows = compare_members(args.sources, args.data, args.split, log=lambda line: print(line, file=sys.stderr))

    def text() -> None:
        print(f"{'accuracy':>8}  {'correct':>13}  members ({args.split}, TTA {DEFAULT_TTA}, equal weights)")
        for r in rows:
            print(f"{r['accuracy']:8.4f}  {r['correct']:>5,} of {r['faces']:,}  {' + '.join(r['members'])}")

    emit(args, rows, text)
    return 0


def card(args: argparse.Namespace) -> int:
    name = args.model_dir or DEFAULT_MODEL
    folder = shipped_folder(name) if name in (DEFAULT_MODEL, FAST_MODEL) else Path(name)
    rewrite_card(folder, note=args.note)
    print(f"wrote {folder / MODEL_CARD} from its metrics.json")
    return 0


def warmup_command(args: argparse.Namespace) -> int:
    source = args.data or load_settings().active_source()

    def on_step(k: int, total: int, step) -> None:
        if not args.json:
            print(f"[{k + 1}/{total}] {step.title}", file=sys.stderr, flush=True)

    done = warm(source, on_step=on_step)
    lines = [("cached already" if d["cached"] else "computed in " + fmt_seconds(d["seconds"])) + f": {d['step']}"
             for d in done]
    emit(args, {"data": source, "steps": done},
         "\n".join(lines) + "\nReady: these open in seconds on the pages (they read data/cache/).")
    return 0


def add_commands(sub) -> None:
    wu = sub.add_parser("warmup", help="prepare for class: compute the evaluations and Explore maps a lesson opens "
                                       "into the caches the pages read")
    wu.add_argument("--data", help="data source (default: the app's active data set)")
    add_json_option(wu)
    wu.set_defaults(func=warmup_command)
    rel = sub.add_parser("release", help="ship a run (or several, averaged as one ensemble) as the default model "
                         "(--as fast: the fast one): copy, evaluate, write the model card")
    rel.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                     help="a run directory; several: an ensemble of them (a released model's folder may be one)")
    rel.add_argument("--data", required=True, help="FER2013 (for PublicTest and PrivateTest)")
    rel.add_argument("--note", default="", help="a sentence for the card's Data section: how the model was chosen, "
                     "earlier candidates measured on PrivateTest")
    rel.add_argument("--as", dest="shipped_as", choices=(DEFAULT_MODEL, FAST_MODEL), default=DEFAULT_MODEL,
                     help="which shipped model it becomes: 'default' (the most accurate) or 'fast' (for the views "
                          "where speed matters)")
    rel.add_argument("--member", metavar="NAME", help="ship one member of an ensemble alone (the one source is the "
                     "ensemble: 'default' or its folder; NAME as its card lists it)")
    rel.set_defaults(func=release_command)

    cmp = sub.add_parser("compile", help="compile a shipped model for the inference engine again (LiteRT, chosen by "
                         "measurement on PublicTest) and write its card")
    cmp.add_argument("model_dir", nargs="?", metavar="default|fast|FOLDER",
                     help="a shipped model ('default', the default, or 'fast') or a released model's folder")
    cmp.add_argument("--data", required=True, help="FER2013 (PublicTest chooses; PrivateTest is reported)")
    cmp.set_defaults(func=compile_command)

    exp = sub.add_parser("export", help="write a model as ONNX, TFLite or a TensorFlow SavedModel (uint8 faces in, "
                         "probabilities out, preprocessing inside)")
    exp.add_argument("model", metavar="RUN|default|fast", help="a run directory or name, a .keras file, 'default' or "
                     "'fast'")
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--quantize", default="none", choices=QUANTIZE,
                     help="dynamic: int8 weights; float16: half-float weights (ONNX and TFLite; default none)")
    exp.add_argument("--out", metavar="FOLDER", help="the export folder (default: MODEL-FORMAT[-QUANTIZE] here)")
    exp.set_defaults(func=export)

    mem = sub.add_parser("members", help="candidate ensemble members: PublicTest accuracy of each and of every "
                         "combination (PrivateTest is never read), to choose before a release")
    mem.add_argument("sources", nargs="+", metavar="RUN_DIR", help="run directories or released model folders")
    mem.add_argument("--data", required=True, help="FER2013 (or the data set the members were trained on)")
    mem.add_argument("--split", default="PublicTest", choices=("PublicTest", "Training"))
    add_json_option(mem)
    mem.set_defaults(func=members)

    crd = sub.add_parser("card", help="write a released model's card again from its metrics.json (after a "
                         "change of the default TTA or of the card template; nothing is evaluated again)")
    crd.add_argument("model_dir", nargs="?", metavar="default|fast|FOLDER",
                     help="a shipped model ('default', the default, or 'fast') or a released model's folder")
    crd.add_argument("--note", help="replace the card's note on how the model was chosen ('' removes it)")
    crd.set_defaults(func=card)
