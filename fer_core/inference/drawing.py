"""The one way faces are drawn on a picture, for photos and video frames alike (OpenCV): a box per
face and its label on a filled tab above it, kept inside the picture."""

from __future__ import annotations

import numpy as np

from fer_core.inference.faces import Box

#: OpenCV's font scale of a label on a picture 1,000 px on its longer side (the text is then about
#: 2.4% of the picture high, readable when the picture is shown at the width of a page); the scale
#: follows the picture's size, never below :data:`MIN_FONT_SCALE`.
FONT_SCALE = 0.9
MIN_FONT_SCALE = 0.5
#: How much larger labels are in presentation mode (read from the back of a room).
PRESENT_SCALE = 1.6


def label_scale(width: int, height: int, larger: bool = False) -> float:
    """The font scale of the labels on a ``width`` x ``height`` picture (``larger``: presentation mode)."""
    return max(MIN_FONT_SCALE, FONT_SCALE * max(width, height) / 1000) * (PRESENT_SCALE if larger else 1.0)


def label_height(scale: float) -> int:
    """Height in pixels of a label's tab (text and its margins) at font ``scale``: a photo whose face
    touches its top gets a band this high above it, so that no label covers a face."""
    return round(32 * scale)


def label_faces(img: np.ndarray, faces: list[tuple[Box, str, tuple[int, int, int]]], thick: int,
                larger: bool = False, scale: float | None = None) -> np.ndarray:
    """Draw on ``img`` (in place; returned) each ``(box in img's pixels, text, colour)``: the box's
    outline ``thick`` pixels wide and the text in black on a tab of the box's colour above it
    (inside the picture at its top and right edges), sized to the picture (:func:`label_scale`)
    unless ``scale`` says.
    Colours are in ``img``'s channel order."""
    import cv2

    h, w = img.shape[:2]
    scale = scale or label_scale(w, h, larger)
    tab, weight = label_height(scale), max(1, round(scale * 1.6))
    for box, text, colour in faces:
        cv2.rectangle(img, (box.x, box.y), (box.x + box.w, box.y + box.h), colour, thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        pad = max(3, tab // 8)
        top = max(box.y - tab, 0)
        left = max(min(box.x, w - tw - 2 * pad), 0)
        cv2.rectangle(img, (left, top), (left + tw + 2 * pad, min(top + tab, h - 1)), colour, -1)
        cv2.putText(img, text, (left + pad, top + tab - base - pad // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), weight, cv2.LINE_AA)
    return img
