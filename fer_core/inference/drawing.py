"""The one way faces are drawn on a picture, for photos and video frames alike (OpenCV): a box per
face and its label on a filled tab above it, kept inside the picture."""

from __future__ import annotations

import numpy as np

from fer_core.inference.faces import Box

FONT_SCALE = 0.5
#: Height in pixels of a label's tab (text and its margins): a photo whose face touches its top
#: gets a band this high above it, so that no label covers a face.
LABEL_HEIGHT = 16


def label_faces(img: np.ndarray, faces: list[tuple[Box, str, tuple[int, int, int]]], thick: int) -> np.ndarray:
    """Draw on ``img`` (in place; returned) each ``(box in img's pixels, text, colour)``: the box's
    outline ``thick`` pixels wide and the text in black on a tab of the box's colour above it
    (inside the picture at its top and right edges). Colours are in ``img``'s channel order."""
    import cv2

    h, w = img.shape[:2]
    for box, text, colour in faces:
        cv2.rectangle(img, (box.x, box.y), (box.x + box.w, box.y + box.h), colour, thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)
        top = max(box.y - LABEL_HEIGHT, 0)
        left = max(min(box.x, w - tw - 6), 0)
        cv2.rectangle(img, (left, top), (left + tw + 6, min(top + LABEL_HEIGHT, h - 1)), colour, -1)
        cv2.putText(img, text, (left + 3, top + LABEL_HEIGHT - base - 1), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return img
