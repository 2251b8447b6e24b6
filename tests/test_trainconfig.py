"""The training configuration: its file, its checks, the command line that reproduces it."""

import json
import shlex
from dataclasses import replace

import pytest

from fer_core.cli import build_parser
from fer_core.cli.training import config_from_args
from fer_core.errors import ConfigError
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


def test_a_config_json_written_before_still_loads_and_a_bad_one_names_each_field(tmp_path):
    path = tmp_path / "config.json"
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "backend"}  # before runs recorded a backend
    path.write_text(json.dumps(old))
    assert TrainConfig.load(path) == TrainConfig()
    path.write_text(json.dumps({**old, "epochs": 0, "seed": "x", "colour": "red"}))
    with pytest.raises(ConfigError, match="Invalid training configuration") as bad:
        TrainConfig.load(path)
    assert set(bad.value.fields) == {"epochs", "seed", "unknown"}
    for garbage in ("[1, 2]", "{"):
        path.write_text(garbage)
        with pytest.raises(ConfigError):
            TrainConfig.load(path)


def test_a_config_is_valid_however_it_is_made():
    with pytest.raises(ConfigError) as bad:
        replace(TrainConfig(), epochs=10, warmup_epochs=10, batch_size=0)
    assert set(bad.value.fields) == {"warmup_epochs", "batch_size"}
    assert bad.value.field is None  # several fields: each under its own name in ``fields``
    assert TrainConfig.parse({"epochs": "3", "flip": "yes", "conv_widths": "8, 16"}) == \
        TrainConfig(epochs=3, flip=True, conv_widths=[8, 16])
