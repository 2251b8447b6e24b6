"""The compact layer notation of the original study, e.g. ``CBCBPD-CBCBPD-FBDF``.

Letters: ``C`` 3x3 convolution, ``B`` batch normalisation, ``P`` 2x2 max pooling,
``D`` dropout, ``F`` fully connected (dense). ``-`` separates blocks. Each block is either a
convolution block (``C``, ``B``, ``P``, ``D``) or a dense block (``F``, ``B``, ``D``). Conv
widths are given per convolution block, dense widths per hidden ``F``; the very last ``F`` is
the output layer with one unit per class. ReLU follows every convolution and hidden dense
layer (after its batch norm when a ``B`` comes right after it); the output ends in softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_core.errors import ConfigError

CONV_LETTERS = set("CBPD")
DENSE_LETTERS = set("FBD")
#: The layer options of a notation network when none are given (the study's experiment B).
CONV_WIDTHS, DENSE_WIDTHS, DROPOUT, PADDING = (32, 64), (1024,), 0.25, "valid"


def notation_defaults() -> dict:
    """The builder options a notation network gets unless told otherwise."""
    return {"conv_widths": list(CONV_WIDTHS), "dense_widths": list(DENSE_WIDTHS), "dropout": DROPOUT,
            "padding": PADDING}


@dataclass(frozen=True)
class Block:
    kind: str  # "conv" or "dense"
    layers: str


def parse_notation(text: str) -> list[Block]:
    """Parse a notation string into blocks.

    Raises:
        ConfigError: the string is empty or has a letter where it cannot be, with its position.
    """
    spec = text.strip().upper()
    if not spec:
        raise ConfigError("Layer notation is empty; write e.g. 'CBCBPD-CBCBPD-FBDF'.")
    blocks, pos, seen_dense = [], 0, False
    for part in spec.split("-"):
        if not part:
            raise ConfigError(f"Layer notation {text!r}: empty block at character {pos + 1} ('--' or a '-' at an end).")
        kind = "dense" if "F" in part else "conv"
        if kind == "conv" and seen_dense:
            raise ConfigError(f"Layer notation {text!r}: character {pos + 1} starts a convolution block after a dense block.")
        allowed = DENSE_LETTERS if kind == "dense" else CONV_LETTERS
        for i, ch in enumerate(part):
            if ch not in "CBPDF":
                raise ConfigError(f"Layer notation {text!r}: unknown letter {ch!r} at character {pos + i + 1}; "
                                  "use C (conv), B (batch norm), P (pool), D (dropout), F (dense), '-' between blocks.")
            if ch not in allowed:
                raise ConfigError(f"Layer notation {text!r}: {ch!r} at character {pos + i + 1} cannot be in a "
                                  f"{kind} block ({'C and P belong before the dense blocks' if kind == 'dense' else 'F starts a dense block'}).")
            if ch == "B" and (i == 0 or part[i - 1] not in "CF"):
                raise ConfigError(f"Layer notation {text!r}: 'B' at character {pos + i + 1} must follow a C or an F.")
        if kind == "conv" and "C" not in part:
            raise ConfigError(f"Layer notation {text!r}: the block at character {pos + 1} has no C.")
        seen_dense |= kind == "dense"
        blocks.append(Block(kind, part))
        pos += len(part) + 1
    if not seen_dense:
        raise ConfigError(f"Layer notation {text!r}: it needs a final dense block with an F for the output layer.")
    return blocks


def count_notation_params(text: str, conv_widths, dense_widths, num_classes: int = 7, padding: str = PADDING,
                          size: int = 48) -> int:
    """Check that a notation network can be built on ``size`` x ``size`` faces; return its parameter count.

    The same checks as :func:`build_from_notation`, without Keras: widths that do not match the
    blocks and images shrunk to nothing are found before anything is built.

    Raises:
        ConfigError: as :func:`build_from_notation`.
    """
    blocks, convs, denses, hidden = _plan(text, conv_widths, dense_widths, padding)
    h = w = size
    channels, params, ci, di, seen_f, flat = 1, 0, 0, 0, 0, None
    for block in blocks:
        for ch in block.layers:
            if ch == "C":
                if min(h, w) < (3 if padding == "valid" else 1):
                    raise ConfigError(f"Layer notation {text!r}: the image is {h}x{w} before a convolution; "
                                      "use padding 'same' or fewer blocks.")
                params += (9 * channels + 1) * convs[ci]
                channels = convs[ci]
                if padding == "valid":
                    h, w = h - 2, w - 2
            elif ch == "B":
                params += 4 * (channels if flat is None else flat)
            elif ch == "P":
                if min(h, w) < 2:
                    raise ConfigError(f"Layer notation {text!r}: nothing left to pool ({h}x{w}).")
                h, w = h // 2, w // 2
            elif ch == "F":
                fan_in = h * w * channels if flat is None else flat
                seen_f += 1
                units = num_classes if seen_f == hidden + 1 else denses[di]
                di += 0 if seen_f == hidden + 1 else 1
                params += (fan_in + 1) * units
                flat = units
        if block.kind == "conv":
            ci += 1
    return params


def build_from_notation(x, text: str, conv_widths, dense_widths, num_classes: int, dropout: float = 0.25,
                        padding: str = "valid"):
    """Apply the layers a notation describes to the Keras tensor ``x``; return the output tensor.

    Args:
        conv_widths: filters of each convolution block (one per block, or one for all).
        dense_widths: units of each hidden dense layer (one per hidden F, or one for all).
        padding: ``"valid"`` (as in the study's parameter counts) or ``"same"``.

    Raises:
        ConfigError: widths do not match the notation, or the image shrinks to nothing.
    """
    from keras import layers

    # every check (widths, padding, an image shrunk to nothing) before any layer is built
    count_notation_params(text, conv_widths, dense_widths, num_classes, padding, size=int(x.shape[1]))
    blocks, conv_widths, dense_widths, hidden = _plan(text, conv_widths, dense_widths, padding)
    ci = di = 0
    flat = False
    total_f = hidden + 1
    seen_f = 0
    for block in blocks:
        for i, ch in enumerate(block.layers):
            nxt = block.layers[i + 1] if i + 1 < len(block.layers) else ""
            if ch == "C":
                x = layers.Conv2D(conv_widths[ci], 3, padding=padding, activation=None if nxt == "B" else "relu")(x)
            elif ch == "B":
                x = layers.BatchNormalization()(x)
                prev = block.layers[i - 1]
                if prev == "C" or (prev == "F" and seen_f < total_f):
                    x = layers.Activation("relu")(x)
            elif ch == "P":
                x = layers.MaxPooling2D(2)(x)
            elif ch == "D":
                x = layers.Dropout(dropout)(x)
            elif ch == "F":
                if not flat:
                    x = layers.Flatten()(x)
                    flat = True
                seen_f += 1
                last = seen_f == total_f
                units = num_classes if last else dense_widths[di]
                di += 0 if last else 1
                x = layers.Dense(units, activation=None if (last or nxt == "B") else "relu")(x)
        if block.kind == "conv":
            ci += 1
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def _plan(text: str, conv_widths, dense_widths, padding: str):
    """Parse a notation and check its options: ``(blocks, conv widths, dense widths, hidden dense layers)``."""
    blocks = parse_notation(text)
    n_conv = sum(b.kind == "conv" for b in blocks)
    hidden = sum(b.layers.count("F") for b in blocks) - 1
    convs = _widths(conv_widths, n_conv, "convolution block", text, "conv_widths")
    denses = _widths(dense_widths, hidden, "hidden dense layer", text, "dense_widths")
    if padding not in ("valid", "same"):
        raise ConfigError(f"Padding {padding!r}: use 'valid' or 'same'.", field="padding")
    return blocks, convs, denses, hidden


def _widths(values, n: int, what: str, text: str, field: str | None = None) -> list[int]:
    vals = [int(v) for v in ([values] if isinstance(values, int) else list(values or []))]
    if n == 0:
        return []
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n or any(v < 1 for v in vals):
        raise ConfigError(f"Layer notation {text!r} has {n} {what}(s); give {n} positive width(s) "
                          f"(or one for all), not {vals}.", field=field)
    return vals
