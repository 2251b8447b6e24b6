"""Ensembles: several independently trained networks averaged in one ``.keras`` model.

The ensemble is a functional Keras model like any other: it takes the same 48x48 grayscale
faces, each member keeps its own preprocessing (rescaling, centre crop) inside it, and a
``keras.layers.Average`` named :data:`MEAN_LAYER` averages their class probabilities. So every
page and command uses it unchanged; Grad-CAM averages the members' maps (see
:func:`fer_core.inference.explain.gradcam`).
"""

from __future__ import annotations

MEAN_LAYER = "ensemble_mean"
MEMBER_PREFIX = "member_"


def build_ensemble(members: list, name: str = "ensemble"):
    """One model whose output is the mean of ``members``' outputs (each a functional model that
    takes (48, 48, 1) faces and gives probabilities over the same classes)."""
    import keras

    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    outputs = {m.output_shape[-1] for m in members}
    if len(outputs) != 1:
        raise ValueError(f"the members give different numbers of classes: {sorted(outputs)}")
    x = keras.Input((48, 48, 1), name="face")
    probs = []
    for i, member in enumerate(members, 1):
        member.name = f"{MEMBER_PREFIX}{i}"  # unique names: the saved file nests each member by name
        probs.append(member(x))
    return keras.Model(x, keras.layers.Average(name=MEAN_LAYER)(probs), name=name)


def members(model) -> list:
    """The member networks of an ensemble built by :func:`build_ensemble` ([] for any other model)."""
    if not any(layer.name == MEAN_LAYER for layer in model.layers):
        return []
    return [layer for layer in model.layers if layer.name.startswith(MEMBER_PREFIX) and hasattr(layer, "layers")]
