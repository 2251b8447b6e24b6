"""The training configuration: the command line that reproduces it."""

import shlex

import pytest

from fer_core.cli import build_parser
from fer_core.cli.training import config_from_args
from fer_core.runs import commands
from fer_core.runs.recipes import list_recipes
from fer_core.runs.trainconfig import TrainConfig


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
    line = commands.train(cfg, "data/runs/x", data="demo")
    args = build_parser().parse_args(shlex.split(line)[3:])  # after "python -m fer_core"
    assert args.out == "data/runs/x"
    assert config_from_args(args) == cfg
    assert line.count("--set") == len([k for k in overrides if k not in ("epochs", "learning_rate", "init_from")])


def test_every_recipe_command_and_follow_up_parses_back_to_what_it_names():
    """A recipe's command trains that recipe; its follow-up commands (the card prints them) name
    the recipe's run and data set, as the command line reads them."""
    parser = build_parser()
    recipes = list_recipes()
    assert any(r.then for r in recipes)  # the shipped recipes include follow-up steps
    for recipe in recipes:
        args = parser.parse_args(shlex.split(recipe.command(data="/data/fer2013"))[3:])
        assert (args.command, args.recipe, args.data) == ("train", recipe.name, "/data/fer2013")
        for line in recipe.follow_up(data="/data/fer2013"):
            args = parser.parse_args(shlex.split(line)[3:])
            assert args.command == line.split()[3] and args.data == "/data/fer2013"
            assert args.run_dir == f"data/runs/{recipe.run}"
    args = parser.parse_args(shlex.split(commands.on_run("recalibrate --tta tencrop", "r1"))[3:])
    assert (args.command, args.run_dir, args.tta, args.data) == ("recalibrate", "data/runs/r1", "tencrop", "$FER2013_DIR")
