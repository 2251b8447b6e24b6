"""Command-line interface: ``python -m fer_core <command> ...``.

Every command prints a clear one-line error (exit status 2) instead of a traceback when
the input is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import FerError


def _data_summary(args: argparse.Namespace) -> int:
    from .data import load_dataset

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
    from .models import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    for m in models:
        print(f"{m['name']:<15} {m['params']:>12,}  {m['description']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import read_metrics, train
    from .trainconfig import TrainConfig

    if args.resume:
        run_dir = train(run_dir=args.resume, resume=True, verbose=1)
    else:
        if not args.arch:
            raise FerError("Give --arch (a model name from 'python -m fer_core models', or layer notation).")
        overrides = {k: v for k, v in {
            "data": args.data, "merge": args.merge, "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.lr, "optimizer": args.optimizer, "schedule": args.schedule, "seed": args.seed,
        }.items() if v is not None}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise FerError(f"--set {item!r}: write it as KEY=VALUE, e.g. --set flip=true.")
            overrides[key.strip()] = value.strip()
        cfg = TrainConfig.for_model(args.arch, **overrides)
        run_dir = train(cfg, args.out, verbose=1)
    rows = read_metrics(run_dir)
    best = max(rows, key=lambda r: r.get("val_accuracy", 0)) if rows else {}
    print(f"run: {run_dir}  epochs: {len(rows)}  best val_accuracy: {best.get('val_accuracy', float('nan')):.4f}"
          f" (epoch {best.get('epoch', '-')})")
    return 0


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

    models = sub.add_parser("models", help="list the registered architectures")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_models)

    tr = sub.add_parser("train", help="train a model and write a run directory")
    tr.add_argument("--data", help="data source ('demo', CSV or image folder)")
    tr.add_argument("--arch", help="model name or layer notation, e.g. CBCBPD-CBCBPD-FBDF")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--out", help="run directory (default: a new folder under data/runs)")
    tr.add_argument("--merge", help="class merging, e.g. disgust=angry")
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float, help="learning rate")
    tr.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    tr.add_argument("--schedule", choices=["constant", "step", "cosine", "plateau"])
    tr.add_argument("--seed", type=int)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other TrainConfig field, e.g. --set flip=true --set conv_widths=32,64")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    tr.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
