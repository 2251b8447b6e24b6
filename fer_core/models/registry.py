"""The architecture registry: names to builders, like timm's ``register_model``.

This module imports no architecture: presets register themselves where they are defined
(:mod:`fer_core.models.architectures`), and :mod:`fer_core.models.build` imports both and builds models.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from fer_core.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture, its layer notation (for the study's presets) and the
    training settings its source used (field names of :class:`~fer_core.runs.trainconfig.TrainConfig`)."""

    name: str
    description: str
    builder: Callable
    train_defaults: dict = field(default_factory=dict)
    notation: str = ""

    def takes(self, option: str) -> bool:
        """True when the builder accepts keyword ``option`` (e.g. ``width``)."""
        return option in inspect.signature(self.builder).parameters

    def options(self) -> dict:
        """The builder's keyword options and their defaults (``{"width": 32, ...}``)."""
        params = list(inspect.signature(self.builder).parameters.values())[2:]  # after (inputs, num_classes)
        return {p.name: p.default for p in params}


REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, notation: str = "", **train_defaults):
    """Decorator that registers ``builder(inputs, num_classes, **options) -> outputs``."""

    def wrap(builder):
        if name in REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        REGISTRY[name] = ModelSpec(name, description, builder, train_defaults, notation)
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    """Return the registered spec of ``name``.

    Raises:
        ModelError: no model of that name is registered.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"Unknown model {name!r}. Registered: {', '.join(sorted(REGISTRY))}; "
                         "or give a layer notation such as 'CBCBPD-CBCBPD-FBDF'.") from None


def registered(name: str) -> bool:
    return name in REGISTRY


def names(taking: str = "") -> list[str]:
    """Registered names, sorted; with ``taking``, only those whose builder accepts that option."""
    return sorted(n for n, s in REGISTRY.items() if not taking or s.takes(taking))
