"""Architecture registry: ``create_model(name, num_classes)``, ``list_models()``.

Every builder returns a functional ``keras.Model`` that takes raw uint8 48x48x1 faces:
rescaling (and the centre crop of recipes trained on random crops) lives inside the model.
Names not in the registry are read as layer notation (see :mod:`fer_core.notation`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable

from .config import IMAGE_SIZE
from .errors import ConfigError, ModelError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture and the training settings its source used."""

    name: str
    description: str
    builder: Callable
    train_defaults: dict = field(default_factory=dict)

    def takes(self, option: str) -> bool:
        """True when the builder accepts keyword ``option`` (e.g. ``width``)."""
        return option in inspect.signature(self.builder).parameters


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, **train_defaults):
    """Decorator that registers ``builder(inputs, num_classes, **kwargs) -> outputs``."""

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, description, builder, train_defaults)
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    """Return the registered spec of ``name``.

    Raises:
        ModelError: no model of that name is registered.
    """
    _load_presets()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"Unknown model {name!r}. Registered: {', '.join(sorted(_REGISTRY))}; "
                         "or give a layer notation such as 'CBCBPD-CBCBPD-FBDF'.") from None


def _load_presets() -> None:
    from . import architectures  # noqa: F401  (importing it registers the presets)


def is_notation(name: str) -> bool:
    """True when ``name`` is layer notation rather than a registered name."""
    _load_presets()
    return bool(name) and set(name.upper()) <= set("CBPDF-") and name not in _REGISTRY


def create_model(name: str, num_classes: int = 7, *, crop: int = IMAGE_SIZE, **kwargs):
    """Build a model by registry name or layer notation.

    Args:
        name: a registered name (see :func:`list_models`) or a notation string.
        num_classes: output classes (6 when disgust is merged into angry).
        crop: size of the centre crop the network sees (random crops of that size in training).
        **kwargs: builder options, e.g. ``conv_widths``, ``dense_widths``, ``dropout``, ``padding``
            for notation; ``width`` for some presets.

    Raises:
        ModelError: unknown name. ConfigError: invalid notation or options.
    """
    import keras
    from keras import layers

    if not 8 <= crop <= IMAGE_SIZE:
        raise ConfigError(f"Crop size {crop}: use a value between 8 and {IMAGE_SIZE}.")
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if crop < IMAGE_SIZE:
        x = layers.CenterCrop(crop, crop, name="center_crop")(x)
    if is_notation(name):
        from .notation import build_from_notation

        opts = {"conv_widths": (32, 64), "dense_widths": (1024,), "dropout": 0.25, "padding": "valid", **kwargs}
        outputs = build_from_notation(x, name, num_classes=num_classes, **opts)
        label = name.upper()
    else:
        spec = get_spec(name)
        try:
            outputs = spec.builder(x, num_classes, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"Model {name!r}: {exc}") from None
        label = name
    return keras.Model(inputs, outputs, name=_keras_name(label))


def _keras_name(label: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in label.lower())[:60] or "model"


@functools.cache
def count_params(name: str, num_classes: int = 7) -> int:
    """Parameter count of a registered model for 48x48x1 input (cached)."""
    return int(create_model(name, num_classes).count_params())


def list_models(with_params: bool = True) -> list[dict]:
    """Return ``{"name", "description", "params"}`` for every registered model."""
    _load_presets()
    return [{"name": s.name, "description": s.description,
             **({"params": count_params(s.name)} if with_params else {})}
            for s in sorted(_REGISTRY.values(), key=lambda s: s.name)]


def model_names(taking: str = "") -> list[str]:
    """Registered names, sorted; with ``taking``, only those whose builder accepts that option."""
    _load_presets()
    return sorted(n for n, s in _REGISTRY.items() if not taking or s.takes(taking))
