"""``train`` and ``recalibrate``, and the training options that ``jobs submit`` shares."""

from __future__ import annotations

import argparse
import os
import sys

from fer_core.cli.output import add_json_option, emit
from fer_core.config import fer2013_dir, runs_dir
from fer_core.device import fence_tensorflow
from fer_core.errors import FerError
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from fer_core.runs.recipes import get_recipe
from fer_core.runs.rundir import is_run, read_config, read_metrics
from fer_core.runs.trainconfig import BACKENDS, OPTIMIZERS, SCHEDULES, TrainConfig
from fer_core.training.calibrate import recalibrate_run
from fer_core.training.trainer import train
from fer_core.training.validation import check_world, config_notes


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training config the options describe (a recipe or an architecture, then the options),
    parsed and checked against the world as every surface checks one."""
    if not args.arch and not args.recipe:
        raise FerError("Give --recipe (see 'python -m fer_core recipes') or --arch (a model name from "
                       "'python -m fer_core models', or layer notation).")
    if args.arch and args.recipe:
        raise FerError("Give --recipe or --arch, not both: a recipe names its architecture.")
    overrides = {k: v for k, v in {
        "data": args.data, "merge": args.merge, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.lr, "optimizer": args.optimizer, "schedule": args.schedule, "seed": args.seed,
        "init_from": args.init_from, "teacher": args.teacher, "backend": args.backend,
    }.items() if v is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise FerError(f"--set {item!r}: write it as KEY=VALUE, e.g. --set flip=true.")
        overrides[key.strip()] = value.strip()
    if args.recipe:
        data = overrides.pop("data", None) or fer2013_dir()
        if not data:
            raise FerError("Give --data (or set FER2013_DIR): a recipe names everything but the data set.")
        cfg = TrainConfig.parse({**get_recipe(args.recipe).train_config(data).to_dict(), **overrides})
    else:
        cfg = TrainConfig.for_model(args.arch, **overrides)
    return noted(check_world(cfg, trusted=True))


def wanted_backend(args: argparse.Namespace) -> str | None:
    """The backend ``train`` or a job's worker must run: the run's own when it has one (a resumed
    run, a job's run folder; whatever the environment says), else the one asked for
    (``--backend``), else None (the environment's)."""
    run = getattr(args, "resume", None) or getattr(args, "run_dir", None)
    recorded = read_config(run).backend if run and is_run(run) else ""
    return recorded or getattr(args, "backend", None) or None


def choose_backend(args: argparse.Namespace) -> None:
    """Before Keras is first imported: set ``KERAS_BACKEND`` to :func:`wanted_backend`."""
    backend = wanted_backend(args)
    if backend and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        fence_tensorflow(backend)


def noted(cfg: TrainConfig) -> TrainConfig:
    """The configuration, after printing (to stderr) what it does that may surprise."""
    for name, note in config_notes(cfg).items():
        print(f"note ({name}): {note}", file=sys.stderr)
    return cfg


def run_out(args: argparse.Namespace) -> str | None:
    """Where a new run goes: --out, else a recipe's own run name under data/runs, else a new folder."""
    if args.out:
        return args.out
    return str(runs_dir() / get_recipe(args.recipe).run) if args.recipe else None


def train_command(args: argparse.Namespace) -> int:
    if args.resume:
        if args.arch or args.recipe or args.set or args.out:
            raise FerError("--resume continues a run with its own configuration: give only --epochs N to extend it.")
        run_dir = train(run_dir=args.resume, resume=True, epochs=args.epochs, verbose=1)
    else:
        run_dir = train(config_from_args(args), run_out(args), verbose=1)
    rows = read_metrics(run_dir)
    best = max(rows, key=lambda r: r.get("val_accuracy", 0)) if rows else {}
    print(f"run: {run_dir}  epochs: {len(rows)}  best val_accuracy: {best.get('val_accuracy', float('nan')):.4f}"
          f" (epoch {best.get('epoch', '-')})")
    return 0


def recalibrate(args: argparse.Namespace) -> int:
    rec = recalibrate_run(args.run_dir, args.data, args.tta,
                          log=lambda line: print(line, file=sys.stderr if args.json else sys.stdout))
    if "val_accuracy_before" not in rec:  # a model without batch normalization: nothing was measured
        emit(args, rec, f"{args.run_dir}: the model has no batch-norm layer; model.keras stays the selected "
                        "checkpoint")
        return 0
    emit(args, rec, lambda: print(
        f"{args.run_dir}: PublicTest accuracy {rec['val_accuracy_before']:.4f} -> {rec['val_accuracy_after']:.4f} "
        f"({rec['tta']}); " + ("model.keras is now the recalibrated model" if rec["kept"] else
                               "model.keras stays the selected checkpoint")))
    return 0


def add_train_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--teacher", metavar="MODEL", help="distillation: also learn from this model's answers on each "
                   "augmented batch ('default', a run or a .keras file); --set temperature=T --set soft_weight=W")
    p.add_argument("--backend", choices=[b for b in BACKENDS if b],
                   help="the Keras backend to train under (default: the environment's KERAS_BACKEND, else tensorflow); "
                        "JAX and PyTorch never import TensorFlow")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set flip=true --set conv_widths=32,64")


def add_train_command(sub) -> None:
    tr = sub.add_parser("train", help="train a model and write a run directory")
    add_train_options(tr)
    tr.add_argument("--out", help="run directory (default: a new folder under data/runs)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (with --epochs N: "
                    "extend it to N epochs in all; a cosine schedule continues as if N had been planned)")
    tr.set_defaults(func=train_command)


def add_recalibrate_command(sub) -> None:
    cal = sub.add_parser("recalibrate", help="re-estimate a finished run's batch-norm statistics on its clean "
                         "Training faces; kept only if PublicTest accuracy does not drop")
    cal.add_argument("run_dir")
    cal.add_argument("--data", help="the data source (default: the one the run was trained on)")
    cal.add_argument("--tta", choices=TTA_MODES, default=DEFAULT_TTA,
                     help=f"TTA for the PublicTest comparison (default {DEFAULT_TTA}, as in the app)")
    add_json_option(cal)
    cal.set_defaults(func=recalibrate)
