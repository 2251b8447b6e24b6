"""Face detection behind a small interface, and cropping faces the way FER2013 framed them.

Two detectors, both run by OpenCV (``opencv-python-headless`` 4.x), neither downloaded at run time:

- ``yunet`` (the default): the YuNet CNN (Wu, Peng, Yu 2023; Apache-2.0, shipped in
  ``fer_core/inference/assets/yunet/`` with its licence and checked against its SHA-256 when loaded). It
  finds turned, tilted, small and large faces, with five landmarks (eyes, nose, mouth
  corners), and tells how far a face is turned, so that each one is cropped upright
  (:meth:`YuNetDetector.upright_angle`);
- ``haar``: the Haar cascades inside the OpenCV wheel (frontal, plus profile on the image and
  its mirror image).

Any object with ``detect(gray) -> list[Box]``, ``name`` and ``frame`` can take their place.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from fer_core.errors import ConfigError, ModelError
from fer_core.shared import Pool, max_analyses

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
    score: float = 1.0  # the cascade's level weight, or YuNet's confidence (0-1)
    frontal: bool = True
    #: YuNet's five landmarks, (x, y) each: right eye, left eye (the person's), nose tip, right
    #: and left mouth corner; empty for the Haar cascades.
    landmarks: tuple = ()

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def scaled(self, k: float) -> "Box":
        """The same box in an image ``k`` times as large."""
        return Box(round(self.x * k), round(self.y * k), round(self.w * k), round(self.h * k), self.score,
                   self.frontal, tuple((x * k, y * k) for x, y in self.landmarks))


class FaceDetector(Protocol):
    name: str
    frame: float  # the FER2013 crop is the box's longer side times this

    def detect(self, gray: np.ndarray, side: int | None = None) -> list[Box]:
        """Faces in the image; ``side``: look at it with its longer side this long only (faster,
        for views that expect large faces: the live camera)."""
        ...


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

    name, frame = "haar", FER_FRAME

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

    def detect(self, gray: np.ndarray, side: int | None = None) -> list[Box]:
        """Faces in a uint8 grayscale image, in its own pixel coordinates (looked at with its
        longer side at most ``side``, default DETECT_SIDE)."""
        cv2 = self.cv2
        h, w = gray.shape
        scale = min(1.0, (side or DETECT_SIDE) / max(h, w))
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


YUNET_FILE = Path(__file__).resolve().parent / "assets" / "yunet" / "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: YuNet's box is about as tall as FER2013's crop: on 300 PublicTest faces (scaled to 160 px and
#: pasted into a larger image), the crop was 1.065 times the box's longer side (median; box
#: centred on the crop within 1% of its side).
YUNET_FRAME = 1.065
YUNET_MIN_SIDE, YUNET_LARGE_SIDE = 640, 320  # see YuNetDetector.detect
ROTATIONS = (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)  # extra views of a face when looking for its upright angle
VIEW_SIDE = 160
MIN_TURN = 10.0  # degrees: smaller tilts are left as they are (see YuNetDetector.upright_angle)
SCORE_SOFTNESS = 0.005  # of the soft arg-max over YuNet's confidence in the turned views


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``: boxes with five landmarks and a confidence.

    Args:
        score: the least confidence kept (0.7: YuNet's true faces score 0.8-0.95, texture below 0.6).
        nms: overlap above which the weaker of two boxes is dropped.
    """

    name, frame = "yunet", YUNET_FRAME

    def __init__(self, score: float = 0.7, nms: float = 0.3, path: Path = YUNET_FILE):
        import cv2

        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise ModelError(f"The face detector {path} is missing ({exc.strerror}); reinstall FER Studio, or "
                             "use --detector haar.") from None
        if digest != YUNET_SHA256:
            raise ModelError(f"The face detector {path} is damaged or replaced (its SHA-256 is {digest}, expected "
                             f"{YUNET_SHA256}); reinstall FER Studio, or use --detector haar.")
        self.cv2 = cv2
        self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score, nms, 5000)
        self.size = (320, 320)
        # a second network for the turned views of one face, always of the same input size:
        # changing a network's input size costs more than running it on a small image
        self.view_net = cv2.FaceDetectorYN.create(str(path), "", (VIEW_SIDE, VIEW_SIDE), 0.3, nms, 50)

    def _run(self, img: np.ndarray):
        size = (img.shape[1], img.shape[0])
        if size != self.size:
            self.net.setInputSize(size)
            self.size = size
        return self.net.detect(self.cv2.cvtColor(img, self.cv2.COLOR_GRAY2BGR))[1]

    def upright_angle(self, gray: np.ndarray, box: Box) -> float:
        """Degrees to turn a face (counter-clockwise) so that it stands upright.

        YuNet's eye landmarks do not follow a turned face (on a face turned by 30 degrees they
        still lie level), but its confidence does: it is highest when the face is upright. So
        the face's surroundings are looked at as they are and turned by 10, 20 and 30 degrees
        either way, and the turns are averaged, weighted by how much more confident YuNet is in
        each view (a soft arg-max). Turns under 10 degrees are left alone: FER2013's own faces
        tilt that much (``benchmarks/bench_faces.py`` measures what turning buys).
        """
        turns = np.array((0.0, *ROTATIONS))
        scores = np.array([self._view(gray, box, turn) for turn in turns])
        if scores.max() <= 0:
            return 0.0
        weights = np.exp((scores - scores.max()) / SCORE_SOFTNESS)
        angle = float((weights * turns).sum() / weights.sum())
        return angle if abs(angle) >= MIN_TURN else 0.0

    def _view(self, gray: np.ndarray, box: Box, turn: float) -> float:
        """YuNet's confidence in the face in its surroundings turned by ``turn`` degrees (0 when
        it finds no face near the middle)."""
        cv2 = self.cv2
        side = VIEW_SIDE  # the face's surroundings (twice its box) scaled to this square
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        m = cv2.getRotationMatrix2D((cx, cy), turn, side / (2 * max(box.w, box.h)))
        m[:, 2] += (side / 2 - cx, side / 2 - cy)
        view = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        best = 0.0
        found = self.view_net.detect(cv2.cvtColor(view, cv2.COLOR_GRAY2BGR))[1]
        for row in found if found is not None else []:
            near = abs(row[0] + row[2] / 2 - side / 2) < side / 4 and abs(row[1] + row[3] / 2 - side / 2) < side / 4
            if near and row[14] > best:
                best = float(row[14])
        return best

    def detect(self, gray: np.ndarray, side: int | None = None) -> list[Box]:
        """Faces in a uint8 grayscale image, in its own pixel coordinates, left to right.

        The image is looked at with its longer side between 640 and 1024 px (a small picture is
        enlarged, so a 24-px face is still found); when that finds nothing, once more at 320 px,
        where a face that fills the whole frame fits YuNet's largest anchors. ``side``: once, at
        that size (a quarter of the work at 320 px for a 640x480 frame; faces under about 20 px
        there, 40 px in the frame, are missed).
        """
        h, w = gray.shape
        if side:
            return sorted(self._detect_at(gray, side / max(h, w)), key=lambda b: (b.x, b.y))
        boxes = self._detect_at(gray, min(max(max(h, w), YUNET_MIN_SIDE), DETECT_SIDE) / max(h, w))
        if not boxes and max(h, w) > YUNET_LARGE_SIDE * 1.2:
            boxes = self._detect_at(gray, YUNET_LARGE_SIDE / max(h, w))
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def _detect_at(self, gray: np.ndarray, scale: float) -> list[Box]:
        cv2 = self.cv2
        h, w = gray.shape
        if scale == 1:
            small = gray
        else:
            small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        found = self._run(small)
        boxes = []
        for row in found if found is not None else []:
            x, y, bw, bh = row[:4]
            x0, y0 = max(0.0, x), max(0.0, y)
            bw, bh = min(bw - (x0 - x), small.shape[1] - x0), min(bh - (y0 - y), small.shape[0] - y0)
            if bw < 4 or bh < 4:
                continue
            marks = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
            boxes.append(Box(int(round(x0)), int(round(y0)), int(round(bw)), int(round(bh)), float(row[14]), True,
                             marks).scaled(1 / scale))
        return boxes


DETECTORS = ("yunet", "haar")
DEFAULT_DETECTOR = "yunet"


class SharedDetector:
    """A detector any number of threads may call at once: each call borrows one instance of a
    small pool (:class:`fer_core.shared.Pool`, as many as analyses may run at once), because an
    OpenCV network or cascade is not safe to call from two threads (YuNet's input size is
    changed per image: two sessions at once got each other's faces, or crashed the server)."""

    def __init__(self, factory: Callable[[], FaceDetector]):
        first = factory()  # made now, so a missing or damaged model is reported at once
        self.name, self.frame = first.name, first.frame
        self.pool = Pool(factory, max_analyses(), first)
        if hasattr(first, "upright_angle"):
            self.upright_angle = self._upright_angle

    def detect(self, gray: np.ndarray, side: int | None = None) -> list[Box]:
        with self.pool.borrow() as detector:
            return detector.detect(gray, side)

    def _upright_angle(self, gray: np.ndarray, box: Box) -> float:
        with self.pool.borrow() as detector:
            return detector.upright_angle(gray, box)


_SHARED: dict[str, SharedDetector] = {}
_SHARED_LOCK = threading.Lock()


def get_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """The process's shared detector of each kind (see :class:`SharedDetector`), safe to call from
    every session's thread.

    Raises:
        ConfigError: an unknown name. ModelError: the detector's model is missing or damaged.
    """
    kinds = {"yunet": YuNetDetector, "haar": HaarDetector}
    if name not in kinds:
        raise ConfigError(f"Face detector {name!r}: use one of {', '.join(DETECTORS)}.")
    with _SHARED_LOCK:
        if name not in _SHARED:
            _SHARED[name] = SharedDetector(kinds[name])
        return _SHARED[name]


def default_detector() -> FaceDetector:
    """The detector used unless one is chosen (YuNet)."""
    return get_detector(DEFAULT_DETECTOR)


def crop_face(gray: np.ndarray, box: Box, size: int = 48, frame: float = FER_FRAME, angle: float = 0.0) -> np.ndarray:
    """Cut a square around ``box`` framed like FER2013 (edges replicated past the border),
    resized to ``size`` x ``size``.

    ``angle``: first turn the face this many degrees counter-clockwise about the box's centre
    (see :meth:`YuNetDetector.upright_angle`), so that it stands upright as FER2013's faces do.
    """
    import cv2

    if abs(angle) >= 1.0:
        return _aligned_crop(gray, box, size, frame, angle)
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


def _aligned_crop(gray: np.ndarray, box: Box, size: int, frame: float, angle: float) -> np.ndarray:
    """The FER2013 crop of a face turned by ``angle`` degrees about the box's centre: only the
    crop's own pixels are resampled (not the whole photo), then scaled down by area."""
    import cv2

    s = max(int(round(max(box.w, box.h) * frame)), 1)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (s / 2 - cx, s / 2 - cy)  # the box centre lands in the middle of an s x s patch
    patch = cv2.warpAffine(gray, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


def can_align(finder) -> bool:
    """Whether a detector can tell how far a face is turned (see :meth:`YuNetDetector.upright_angle`)."""
    return hasattr(finder, "upright_angle")


def upright(finder, gray: np.ndarray, box: Box) -> float:
    """Degrees that turn the face in ``box`` upright (0 for detectors that cannot tell)."""
    return finder.upright_angle(gray, box) if can_align(finder) else 0.0


def face_crop(finder, gray: np.ndarray, box: Box, angle: float | None = None) -> tuple[np.ndarray, float]:
    """The one way a detected face becomes the model's input, in photos, videos and the live
    camera: its 48x48 crop framed as ``finder`` frames faces, turned upright by ``angle``
    degrees; None measures the angle (0 for detectors that cannot). Returns the crop and the angle."""
    if angle is None:
        angle = upright(finder, gray, box)
    return crop_face(gray, box, frame=finder.frame, angle=angle), angle


def face_json(box: Box, angle: float, label: str, proba, classes: tuple[str, ...]) -> dict:
    """One classified face as ``predict --json`` writes it, in a photo or a video frame."""
    return {"box": box.as_list(), "angle": round(float(angle), 1), "label": label,
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, proba)}}
