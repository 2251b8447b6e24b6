"""Command-line interface: ``python -m fer_core <command> ...``.

Each module registers its subcommands (``add_commands``) with a handler each
(``set_defaults(func=...)``); :mod:`.output` prints JSON or text. Every command prints a clear
one-line error (exit status 2) instead of a traceback when the input is wrong; an option a
subcommand does not know is reported with that subcommand's own usage (:class:`SubcommandParser`).
"""

from __future__ import annotations

import argparse
import sys

from fer_core.cli import analysis, explore, job_commands, listings, quiz, shipping, training
from fer_core.device import device_line, fence_tensorflow, quiet_tensorflow
from fer_core.errors import FerError

#: Commands that run a model: TensorFlow is imported quietly first (see fer_core.device). ``predict``
#: imports it itself, once its input files are known to be readable (a mistyped name is said at once).
TF_COMMANDS = {"train", "evaluate", "release", "recalibrate", "card", "models", "export", "members", "explore",
               "warmup"}


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser (nested ones too): an option it does not know is refused here, with
    this subcommand's usage and exit status 2.

    argparse hands a subcommand's unknown options back to the top-level parser, whose usage
    (``python -m fer_core {list,train,...}``) says nothing of the options the user got wrong.
    Every argument after a subcommand's name is that subcommand's, so none is left for a parent.
    """

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)} (see {self.prog} --help)")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_core", description="FER Studio command line.")
    # the subcommands' parsers, and theirs (add_subparsers takes its parent's class)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)
    listings.add_commands(sub)
    training.add_train_command(sub)
    analysis.add_commands(sub)
    explore.add_commands(sub)
    shipping.add_commands(sub)
    training.add_recalibrate_command(sub)
    job_commands.add_commands(sub)
    quiz.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    fence_tensorflow()  # under KERAS_BACKEND=jax or torch, TensorFlow is never imported, even by Keras
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train" or getattr(args, "jobs_command", None) == "work":
            training.choose_backend(args)
        if args.command in TF_COMMANDS or getattr(args, "jobs_command", None) == "work":
            quiet_tensorflow()
        if args.command == "train":
            print(device_line(), flush=True)
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that cannot be written (a file as its folder, read-only, full)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}. Check the path you gave, that its folder exists and is "
              "writable, and that the disk is not full.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
