"""``data summary``, ``recipes`` and ``models``: what there is to train on and with."""

from __future__ import annotations

import argparse

from fer_core.cli.output import add_json_option, emit
from fer_core.data.loading import load_dataset
from fer_core.models.build import list_models
from fer_core.runs.recipes import list_recipes


def data_summary(args: argparse.Namespace) -> int:
    ds = load_dataset(args.source, merge=args.merge, skip_bad=args.skip_bad, use_cache=not args.no_cache)
    summary = ds.summary()

    def text() -> None:
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

    emit(args, summary, text)
    return 0


def models(args: argparse.Namespace) -> int:
    found = list_models()

    def text() -> None:
        print(f"{'name':<15} {'parameters':>12}  {'input':>5}  description")
        for m in found:
            print(f"{m['name']:<15} {m['params']:>12,}  {m['crop']:>2}x{m['crop']:<2}  {m['description']}")
        print("\nParameters are for each preset's own configuration: its input crop (the dense layers grow with it) "
              "and default width. A run's own count is in its run.json and on the Runs page.")

    emit(args, found, text)
    return 0


def recipes(args: argparse.Namespace) -> int:
    found = list_recipes()

    def text() -> None:
        print(f"{'recipe':<20} {'version':>7}  {'arch':<8} {'epochs':>6}  description")
        for r in found:
            print(f"{r.name:<20} {r.version:>7}  {r.config['arch']:<8} {r.config['epochs']:>6}  {r.description}")

    emit(args, [{"name": r.name, "version": r.version, "description": r.description, "run": r.run,
                 "then": list(r.then), "config": r.config} for r in found], text)
    return 0


def add_commands(sub) -> None:
    data = sub.add_parser("data", help="inspect data sets").add_subparsers(dest="data_command", required=True)
    summary = data.add_parser("summary", help="counts per split and class")
    summary.add_argument("source", help="'demo', a FER2013 CSV (.csv/.csv.gz) or an image folder")
    summary.add_argument("--merge", default="", help="class merging, e.g. 'disgust=angry'")
    summary.add_argument("--skip-bad", action="store_true", help="skip and count bad rows/files")
    summary.add_argument("--no-cache", action="store_true", help="parse the source again")
    add_json_option(summary)
    summary.set_defaults(func=data_summary)

    rec = sub.add_parser("recipes", help="list the named training recipes")
    add_json_option(rec)
    rec.set_defaults(func=recipes)

    mod = sub.add_parser("models", help="list the registered architectures")
    add_json_option(mod)
    mod.set_defaults(func=models)
