"""Face detection behind a small interface, and cropping faces the way FER2013 framed them.

The detector is OpenCV's Haar cascades, shipped inside ``opencv-python-headless`` 4.x (no
download at run time): the frontal cascade, plus the profile cascade on the image and its mirror
image for heads turned either way. Any object with ``detect(gray) -> list[Box]`` can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import ModelError

#: FER2013's faces are framed almost exactly like the frontal cascade's box: measured on 300
#: PublicTest faces pasted into larger images, the box is 0.958 of the crop (median) and centred.
#: So the crop is the box enlarged by that factor.
FER_FRAME = 1 / 0.958
#: Cascade weights of true faces (300 PublicTest faces pasted into larger images): 1st
#: percentile 1.49, 5th 2.44. Detections below MIN_SCORE are dropped; those below WEAK_SCORE
#: too when narrower than WEAK_SIZE of the largest face in the photo.
MIN_SCORE, WEAK_SCORE, WEAK_SIZE = 1.0, 2.0, 0.35
#: Detection runs on a copy whose longer side is at most this; crops come from the original.
DETECT_SIDE = 1024


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the original image, with the detector's confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0  # the cascade's level weight
    frontal: bool = True

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> list[Box]: ...


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    return inter / float(a.w * a.h + b.w * b.h - inter) if inter else 0.0


def suppress(boxes: list[Box], threshold: float = 0.3) -> list[Box]:
    """Non-maximum suppression: keep the best box of each group that overlaps (IoU or containment)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: (not b.frontal, -b.score)):  # frontal boxes win ties
        inside = any(iou(box, k) > threshold or _contained(box, k) for k in kept)
        if not inside:
            kept.append(box)
    return sorted(kept, key=lambda b: (b.x, b.y))


def _contained(a: Box, b: Box) -> bool:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return ix * iy > 0.7 * min(a.w * a.h, b.w * b.h)


class HaarDetector:
    """OpenCV Haar cascades: frontal faces, and profiles turned left or right.

    Args:
        profile: "auto" runs the (slower) profile cascades only when no frontal face is found,
            "always" runs them too, "never" skips them.
        min_face: the smallest face to find, as a fraction of the image's shorter side.
        scale_factor: step between the detector's scales (1.15: half the work of 1.1, same faces
            in our checks).
    """

    def __init__(self, profile: str = "auto", min_face: float = 0.05, scale_factor: float = 1.15,
                 neighbours: int = 5):
        import cv2

        self.cv2 = cv2
        self.frontal = self._load("haarcascade_frontalface_default.xml")
        self.profile = self._load("haarcascade_profileface.xml") if profile != "never" else None
        self.profile_mode = profile
        self.min_face, self.scale_factor, self.neighbours = min_face, scale_factor, neighbours

    def _load(self, name: str):
        path = self.cv2.data.haarcascades + name
        cascade = self.cv2.CascadeClassifier(path)
        if cascade.empty():
            raise ModelError(f"OpenCV's face detector {path} is missing: install opencv-python-headless 4.x "
                             "(5.x no longer ships the Haar cascades).")
        return cascade

    def _run(self, cascade, img: np.ndarray, min_side: int, frontal: bool) -> list[tuple]:
        boxes, _, weights = cascade.detectMultiScale3(img, scaleFactor=self.scale_factor, minNeighbors=self.neighbours,
                                                      minSize=(min_side, min_side), outputRejectLevels=True)
        return [(*map(int, b), float(w), frontal) for b, w in zip(boxes, np.ravel(weights))]

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in a uint8 grayscale image, in its own pixel coordinates."""
        cv2 = self.cv2
        h, w = gray.shape
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else gray
        small = cv2.equalizeHist(small)  # dark and bright photos alike
        min_side = max(24, int(self.min_face * min(small.shape)))
        found = self._run(self.frontal, small, min_side, True)
        if self.profile is not None and (self.profile_mode == "always" or not found):
            found += self._run(self.profile, small, min_side, False)
            flipped = self._run(self.profile, np.ascontiguousarray(small[:, ::-1]), min_side, False)
            found += [(small.shape[1] - x - bw, y, bw, bh, s, f) for x, y, bw, bh, s, f in flipped]
        boxes = suppress([Box(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale), s, f)
                          for x, y, bw, bh, s, f in found])
        # A weak detection far smaller than the largest face is nearly always texture, not a
        # face (faces in one photo have similar sizes); strong ones are kept whatever their size.
        largest = max((b.w for b in boxes), default=0)
        # (The weights were measured for the frontal cascade; profile ones run lower.)
        return [b for b in boxes if not b.frontal and b.w >= WEAK_SIZE * largest
                or b.frontal and b.score >= MIN_SCORE and (b.w >= WEAK_SIZE * largest or b.score >= WEAK_SCORE)]


_DETECTOR: HaarDetector | None = None


def default_detector() -> HaarDetector:
    """One shared detector (the cascades are loaded once per process)."""
    global _DETECTOR
    if _DETECTOR is None:
        _DETECTOR = HaarDetector()
    return _DETECTOR


def crop_face(gray: np.ndarray, box: Box, size: int = 48, frame: float = FER_FRAME) -> np.ndarray:
    """Cut a square around ``box`` framed like FER2013 (edges replicated past the border),
    resized to ``size`` x ``size``."""
    import cv2

    side = max(box.w, box.h) * frame
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    src = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
    patch = src[y0 + pad:y0 + pad + s, x0 + pad:x0 + pad + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)
