"""The training configuration: the command line that reproduces it."""

import shlex

import pytest

from fer_core.cli import _config_from_args, build_parser
from fer_core.trainconfig import TrainConfig


@pytest.mark.parametrize("overrides", [
    {},
    {"epochs": 16, "learning_rate": 0.005, "init_from": "default-fer-vgg", "erase": 0.25, "translate": 0.05},
    {"flip": False, "width": 48, "conv_widths": [16, 32], "schedule": "step", "label_smoothing": 0.1, "merge": "disgust=angry"},
])
def test_command_rebuilds_the_same_config(overrides, data_dir):
    if overrides.get("init_from"):  # the model it starts from must exist: a model folder of that name
        (data_dir / "runs" / overrides["init_from"]).mkdir(parents=True)
        (data_dir / "runs" / overrides["init_from"] / "model.keras").write_bytes(b"")
    cfg = TrainConfig.for_model("fer-vgg", data="demo", **overrides)
    line = cfg.command("data/runs/x", data="demo")
    args = build_parser().parse_args(shlex.split(line)[3:])  # after "python -m fer_core"
    assert args.out == "data/runs/x"
    assert _config_from_args(args) == cfg
    assert line.count("--set") == len([k for k in overrides if k not in ("epochs", "learning_rate", "init_from")])
