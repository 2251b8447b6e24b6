"""Recipes: named, versioned training configurations, stored as data (one JSON file each).

A recipe spells out every field of :class:`~fer_core.runs.trainconfig.TrainConfig` except the data
source, so it trains the same network whatever the presets' defaults become later; a changed
recipe is a new file with a new name or version, never an edit. ``run`` is the run directory
name it trains into (under ``data/runs``), which is how a later stage's ``init_from`` names it;
``then`` lists commands to run on the finished run (``recalibrate`` with its options).

``python -m fer_core train --recipe NAME --data FER2013`` trains one; ``recipes`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from fer_core.errors import ConfigError
from fer_core.runs import commands
from fer_core.runs.trainconfig import TrainConfig

FOLDER = Path(__file__).resolve().parent
THEN = ("recalibrate",)  # what may follow a recipe's training


@dataclass(frozen=True)
class Recipe:
    """One named training configuration."""

    name: str
    version: int
    description: str
    run: str
    config: dict
    then: tuple[str, ...] = ()

    def train_config(self, data: str, **overrides) -> TrainConfig:
        """The config to train: the recipe's fields, the data source, then ``overrides`` (if any)."""
        return TrainConfig.parse({**self.config, "data": data, **overrides})

    def command(self, data: str = commands.FER2013) -> str:
        """The command line that trains this recipe."""
        return commands.train_recipe(self.name, data)

    def follow_up(self, data: str = commands.FER2013) -> list[str]:
        """The commands that follow the training (e.g. batch-norm recalibration)."""
        return [commands.on_run(step, self.run, data) for step in self.then]


def _load(path: Path) -> Recipe:
    try:
        raw = json.loads(path.read_text())
        recipe = Recipe(raw["name"], int(raw["version"]), raw["description"], raw["run"], dict(raw["config"]),
                        tuple(raw.get("then", ())))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid recipe file ({exc}).") from None
    if recipe.name != path.stem:
        raise ConfigError(f"{path}: the recipe is named {recipe.name!r}; the file must be named after it.")
    missing = {f.name for f in fields(TrainConfig)} - {"data"} - set(recipe.config)
    if missing or "data" in recipe.config:
        raise ConfigError(f"{path}: a recipe spells out every training field but the data source "
                          f"(missing: {', '.join(sorted(missing)) or 'none'}).")
    if any(step.split(" ")[0] not in THEN for step in recipe.then):
        raise ConfigError(f"{path}: 'then' may only hold {', '.join(THEN)}.")
    TrainConfig.parse(recipe.config)  # every value valid
    return recipe


def list_recipes() -> list[Recipe]:
    """Every recipe, by name."""
    return [_load(p) for p in sorted(FOLDER.glob("*.json"))]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        ConfigError: there is none, with the names there are.
    """
    path = FOLDER / f"{name}.json"
    if not name or "/" in name or not path.is_file():
        raise ConfigError(f"Unknown recipe {name!r}. Recipes: {', '.join(r.name for r in list_recipes())} "
                          "('python -m fer_core recipes' describes them).")
    return _load(path)


def find_recipe(cfg: TrainConfig) -> Recipe | None:
    """The recipe whose fields this config has, or None: its data source and the Keras backend it
    trained under aside (a recipe is the same under any backend)."""
    aside = {"data": "", "backend": ""}
    mine = cfg.to_dict() | aside
    for recipe in list_recipes():
        if TrainConfig.parse(recipe.config).to_dict() | aside == mine:
            return recipe
    return None
