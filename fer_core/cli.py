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
