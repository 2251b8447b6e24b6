"""The command lines FER Studio prints for people to run (model cards, recipes, hints): built here
only, and parsed back by the command line's own parser in ``tests/test_trainconfig.py``."""

from __future__ import annotations

from fer_core.runs.trainconfig import DEFAULT_BACKEND, TrainConfig

PROGRAM = "python -m fer_core"
#: The data set as a reader's shell names it.
FER2013 = '"$FER2013_DIR"'
#: ``train`` options with a flag of their own; every other field is ``--set KEY=VALUE``.
FLAGS = {"epochs": "--epochs", "learning_rate": "--lr", "init_from": "--init-from", "teacher": "--teacher",
         "backend": "--backend"}


def train(cfg: TrainConfig, out: str, data: str = FER2013) -> str:
    """The ``train`` command line that trains exactly ``cfg`` into ``out``; only what differs from
    the architecture's own training defaults is spelled out."""
    base = TrainConfig.for_model(cfg.arch).to_dict()
    parts = [PROGRAM, "train", f"--data {data}", f"--arch {cfg.arch}"]
    sets = []
    for key, value in cfg.to_dict().items():
        if key in ("data", "arch") or value == base[key] or (key == "backend" and value == DEFAULT_BACKEND):
            continue
        if isinstance(value, list):
            text = ",".join(map(str, value))
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        if key in FLAGS:
            parts.append(f"{FLAGS[key]} {text}")
        else:
            sets.append(f"--set {key}={text}")
    return " ".join([*parts, *sets, f"--out {out}"])


def train_recipe(name: str, data: str = FER2013) -> str:
    """The command line that trains the recipe ``name``."""
    return f"{PROGRAM} train --recipe {name} --data {data}"


def on_run(step: str, run_name: str, data: str = FER2013) -> str:
    """A command applied to the run ``data/runs/<run_name>`` after its training: ``step`` is the
    subcommand and its options (a recipe's ``then``, e.g. ``recalibrate --tta tencrop``)."""
    command, _, options = step.partition(" ")
    return f"{PROGRAM} {command} data/runs/{run_name} --data {data}" + (f" {options}" if options else "")
