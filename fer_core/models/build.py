"""Architecture registry: ``create_model(name, num_classes)``, ``list_models()``.

Every builder returns a functional ``keras.Model`` that takes raw uint8 48x48x1 faces:
rescaling (and the centre crop of recipes trained on random crops) lives inside the model.
Names not in the registry are read as layer notation (see :mod:`fer_core.models.notation`).
"""

from __future__ import annotations

import functools

from fer_core.config import IMAGE_SIZE
from fer_core.errors import ConfigError
from fer_core.models import architectures  # noqa: F401  (importing it registers the presets)
from fer_core.models.notation import build_from_notation, notation_defaults
from fer_core.models.registry import ModelSpec, get_spec, names, register_model, registered

__all__ = ["ModelSpec", "count_params", "create_model", "get_spec", "is_notation", "list_models", "model_names",
           "notation_of", "register_model", "registered"]


def is_notation(name: str) -> bool:
    """True when ``name`` is layer notation rather than a registered name."""
    return bool(name) and set(name.upper()) <= set("CBPDF-") and not registered(name)


def notation_of(arch: str) -> str:
    """The layer notation of an architecture: itself for notation, a study preset's own, else ''."""
    if is_notation(arch):
        return arch.upper()
    return get_spec(arch).notation if registered(arch) else ""


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
        opts = {**notation_defaults(), **kwargs}
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


def all_layers(model) -> list:
    """Every layer of a Keras model, depth first, nested models (an ensemble's members) and their
    layers included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(all_layers(layer))
    return out


def _keras_name(label: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in label.lower())[:60] or "model"


@functools.cache
def count_params(name: str, num_classes: int = 7, crop: int = IMAGE_SIZE) -> int:
    """Parameter count of a registered model for ``crop`` x ``crop`` input (cached). The crop
    matters: it sets the size of the map the dense layers see (fer-vgg: 2,624,039 at 48, the
    preset's own; 1,968,679 at 40, the first shipped model's)."""
    return int(create_model(name, num_classes, crop=crop).count_params())


def preset_crop(name: str) -> int:
    """The input side a preset trains at unless told otherwise (its recipe's ``crop``)."""
    return int(get_spec(name).train_defaults.get("crop", IMAGE_SIZE))


def list_models(with_params: bool = True) -> list[dict]:
    """``{"name", "description", "crop", "params"}`` for every registered model: the count is
    for the preset's own configuration, its ``crop`` (a run at another crop has another count,
    recorded in its run.json)."""
    return [{"name": s.name, "description": s.description, "crop": preset_crop(s.name),
             **({"params": count_params(s.name, crop=preset_crop(s.name))} if with_params else {})}
            for s in map(get_spec, names())]


def model_names(taking: str = "") -> list[str]:
    """Registered names, sorted; with ``taking``, only those whose builder accepts that option."""
    return names(taking)
