"""The built-in demo data set: cartoon faces drawn by our own code.

Each class differs in brows, eyes and mouth (angry: lowered V brows and narrow eyes;
surprise: raised brows, wide eyes, open mouth; ...), with jitter in position, size,
rotation, brightness and noise so a network has something to learn. Deterministic from a
seed; 3,500 faces take a few seconds. Used when no real data set is configured and in tests.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from fer_core.config import CLASS_NAMES, IMAGE_SIZE
from fer_core.data.dataset import Dataset, stratified_split

_SCALE = 2  # draw at 2x and downsample, for smooth anti-aliased lines
_S = IMAGE_SIZE * _SCALE

# Per class: brow (inner, outer) heights (+ is up), eye height, mouth kind and curvature.
_STYLE = {
    "angry":    dict(brow=(-3.0, 1.5), eye=2.0, mouth="line", curve=-1.5),
    "disgust":  dict(brow=(-2.0, -2.0), brow_r=(2.5, 0.5), eye=2.5, mouth="wave", curve=0.0),
    "fear":     dict(brow=(3.0, 0.5), eye=5.5, mouth="wide", curve=0.0),
    "happy":    dict(brow=(0.5, 0.5), eye=3.0, mouth="arc", curve=5.0),
    "sad":      dict(brow=(3.0, -1.5), eye=3.0, mouth="arc", curve=-4.0),
    "surprise": dict(brow=(4.5, 4.5), eye=6.0, mouth="open", curve=0.0),
    "neutral":  dict(brow=(0.0, 0.0), eye=3.5, mouth="line", curve=0.0),
}


def draw_face(class_name: str, rng: np.random.Generator) -> np.ndarray:
    """Draw one 48x48 uint8 cartoon face of the given class."""
    style = _STYLE[class_name]
    j = lambda s: rng.normal(0.0, s)  # noqa: E731 - tiny local jitter helper
    bg = int(rng.uniform(20, 110))
    skin = int(rng.uniform(140, 230))
    ink = int(rng.uniform(10, 70))
    img = Image.new("L", (_S, _S), bg)
    d = ImageDraw.Draw(img)
    k = _SCALE * rng.uniform(0.9, 1.1)  # face size
    cx, cy = _S / 2 + j(2.0) * _SCALE, _S / 2 + j(2.0) * _SCALE
    d.ellipse([cx - 19 * k, cy - 22 * k, cx + 19 * k, cy + 23 * k], fill=skin)
    w = max(1, int(round(1.6 * k)))

    for side in (-1, 1):  # -1 left, +1 right
        ex, ey = cx + side * 8 * k, cy - 4 * k
        inner, outer = style.get("brow_r", style["brow"]) if side == 1 else style["brow"]
        by = ey - 7 * k
        d.line([(ex - side * 4.5 * k, by - (inner + j(0.5)) * k),
                (ex + side * 4.5 * k, by - (outer + j(0.5)) * k)], fill=ink, width=w + 1)
        eh = max(0.8, style["eye"] + j(0.4)) * k / 2
        if class_name == "happy":  # smiling eyes are arcs
            d.arc([ex - 4 * k, ey - eh, ex + 4 * k, ey + 2 * eh], 200, 340, fill=ink, width=w)
        else:
            d.ellipse([ex - 3.5 * k, ey - eh, ex + 3.5 * k, ey + eh], fill=ink)

    d.line([(cx, cy - 1 * k), (cx - 1.5 * k, cy + 5 * k), (cx + 1 * k, cy + 5 * k)], fill=ink, width=max(1, w - 1))
    if class_name == "disgust":  # wrinkled nose
        d.line([(cx - 3 * k, cy + 1 * k), (cx - 1 * k, cy + 2 * k)], fill=ink, width=1)
        d.line([(cx + 3 * k, cy + 1 * k), (cx + 1 * k, cy + 2 * k)], fill=ink, width=1)

    my, mw, c = cy + 12 * k, (8 + j(0.7)) * k, (style["curve"] + j(0.5)) * k
    kind = style["mouth"]
    if kind == "arc":
        top = my - abs(c) if c > 0 else my
        box = [cx - mw, top - abs(c), cx + mw, top + abs(c) + 1]
        d.arc(box, 10 if c > 0 else 190, 170 if c > 0 else 350, fill=ink, width=w + 1)
    elif kind == "line":
        d.line([(cx - mw, my - c), (cx, my), (cx + mw, my - c)], fill=ink, width=w + 1)
    elif kind == "wave":
        d.line([(cx - mw, my + 1 * k), (cx - mw / 3, my - 2 * k), (cx + mw / 3, my + 1 * k), (cx + mw, my - 3 * k)],
               fill=ink, width=w + 1)
    elif kind == "wide":
        d.ellipse([cx - mw * 1.1, my - 2 * k, cx + mw * 1.1, my + 3 * k], fill=ink)
    else:  # open
        d.ellipse([cx - mw * 0.55, my - 4 * k, cx + mw * 0.55, my + 6 * k], fill=ink)

    img = img.rotate(j(6.0), resample=Image.Resampling.BILINEAR, fillcolor=bg)
    img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    arr = np.asarray(img, np.float32) + rng.normal(0.0, 6.0, (IMAGE_SIZE, IMAGE_SIZE))
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_demo_dataset(per_class: int = 500, seed: int = 0):
    """Draw the demo data set: ``per_class`` faces of each of the 7 classes.

    The split is a stratified 80/10/10 into Training/PublicTest/PrivateTest.

    Returns:
        A :class:`fer_core.data.dataset.Dataset` whose source is ``"demo"``.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
    labels = labels[rng.permutation(len(labels))]
    images = np.stack([draw_face(CLASS_NAMES[y], rng) for y in labels]) if len(labels) else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    splits = stratified_split(labels, {"Training": 0.8, "PublicTest": 0.1, "PrivateTest": 0.1}, seed).astype(str)
    origins = np.array([f"demo #{i}" for i in range(len(labels))], dtype=str)
    return Dataset(images, labels.astype(np.int64), splits, CLASS_NAMES, "demo", origins)
