"""Faces followed over time, in videos and the live camera: a track is one person.

A face continues a track when its box continues the track's last box and it looks like the same
face (a HOG descriptor of its 48x48 crop); a face that leaves and comes back soon takes its old
track back; a shot cut ends every track.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from fer_core.inference.faces import Box, iou

#: A face belongs to a track when its box overlaps the track's last box this much (IoU), or
#: failing that when its centre is within half a face width of it and its size is similar.
TRACK_IOU, TRACK_NEAR = 0.3, 0.5
#: A track ends when its face has not been seen for this many seconds.
TRACK_GAP = 1.0

#: Two faces "look the same" when their appearance descriptors (:func:`appearance`) agree this
#: much (cosine). Measured on 300 FER2013 faces, each against a slightly moved, turned and
#: relit copy of itself and against another face: the same face scored 0.63 or more in 95% of
#: pairs (median 0.81), two different faces 0.44 or less in 95% (median 0.19). A face that
#: overlaps a track's last box continues it only above SAME_FACE; a face seen again elsewhere
#: within TRACK_GAP (it left and came back) takes its old track only above REENTRY (different
#: faces: 99% below 0.53).
SAME_FACE, REENTRY = 0.45, 0.65
#: A shot cut: the mean absolute difference of two consecutive sampled frames (as 32x24
#: thumbnails, 0-1) above this. Within a shot, frames sampled 0.2 s apart differ by a few
#: hundredths; a hard cut between two photos by 0.15 or more.
CUT = 0.12


def appearance(crop: np.ndarray) -> np.ndarray:
    """A small descriptor of a 48x48 face crop (its HOG, zero-mean and unit length): two crops of
    one face have a dot product near 1, of two faces near 0 (see SAME_FACE)."""
    v = _hog().compute(np.ascontiguousarray(crop, np.uint8)).ravel().astype(np.float32)
    v -= v.mean()
    return v / (float(np.linalg.norm(v)) + 1e-6)


_HOG = threading.local()  # a HOGDescriptor per thread: OpenCV objects are not shared across threads


def _hog():
    import cv2

    if not hasattr(_HOG, "d"):
        _HOG.d = cv2.HOGDescriptor((48, 48), (16, 16), (8, 8), (8, 8), 9)
    return _HOG.d


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A frame as a 32x24 float thumbnail (0-1), for :func:`is_cut`."""
    import cv2

    return cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def is_cut(before: np.ndarray | None, after: np.ndarray) -> bool:
    """Whether two consecutive sampled frames (thumbnails) belong to different shots."""
    return before is not None and float(np.abs(after - before).mean()) > CUT


class Tracker:
    """Links each frame's faces to the faces of earlier frames, so that a track is one person.

    A face continues a track when its box continues the track's last box (overlap, or a near box
    of similar size after a quick move) **and** it looks like the same face (its appearance
    descriptor agrees with the track's, SAME_FACE); a face seen elsewhere within ``gap`` seconds
    of leaving takes its old track back when it looks very like it (REENTRY). Greedy matching,
    best first. :meth:`cut` ends every track (a shot cut: whoever appears next is someone new).
    Without descriptors it matches by position alone.
    """

    def __init__(self, gap: float = TRACK_GAP):
        self.gap = gap
        self.last: dict[int, tuple[Box, float, np.ndarray | None]] = {}  # track -> (box, time seen, look)
        self.next_id = 1

    @staticmethod
    def closeness(a: Box, b: Box) -> float:
        """How well box ``b`` continues box ``a``: their IoU when at least TRACK_IOU; otherwise a
        value below it when their centres are near and sizes similar (a fast move between two
        sampled frames); 0 when they are not the same face."""
        overlap = iou(a, b)
        if overlap >= TRACK_IOU:
            return overlap
        size = max(a.w, a.h, b.w, b.h)
        dist = math.hypot(a.x + a.w / 2 - b.x - b.w / 2, a.y + a.h / 2 - b.y - b.h / 2) / size
        similar = max(a.w, b.w) <= 1.5 * min(a.w, b.w)
        return TRACK_IOU * (1 - dist / TRACK_NEAR) * 0.99 if dist < TRACK_NEAR and similar else 0.0

    def cut(self) -> None:
        """A shot cut: every track ends."""
        self.last.clear()

    def _score(self, old: Box, look, box: Box, new_look) -> float:
        place = self.closeness(old, box)
        if look is None or new_look is None:
            return place
        same = float(look @ new_look)
        if place > 0:
            return place if same >= SAME_FACE else 0.0
        return 0.01 * same if same >= REENTRY else 0.0  # back from elsewhere: after every overlap

    def assign(self, t: float, boxes: list[Box], looks: list[np.ndarray] | None = None) -> list[int]:
        """The track of each box at time ``t`` (new tracks numbered from 1 in order of appearance);
        ``looks``: each box's :func:`appearance` (None: by position alone)."""
        looks = looks if looks is not None else [None] * len(boxes)
        self.last = {k: v for k, v in self.last.items() if t - v[1] <= self.gap}
        pairs = sorted(((self._score(old, look, box, looks[i]), i, k) for i, box in enumerate(boxes)
                        for k, (old, _, look) in self.last.items()), key=lambda p: -p[0])
        ids, taken = [0] * len(boxes), set()
        for score, i, k in pairs:
            if score > 0 and not ids[i] and k not in taken:
                ids[i] = k
                taken.add(k)
        for i, box in enumerate(boxes):
            if not ids[i]:
                ids[i], self.next_id = self.next_id, self.next_id + 1
            previous = self.last.get(ids[i], (None, None, None))[2]
            look = looks[i]
            if look is not None and previous is not None:  # the track's look follows the face slowly
                look = 0.7 * previous + 0.3 * look
                look = look / (float(np.linalg.norm(look)) + 1e-6)
            self.last[ids[i]] = (box, t, look)
        return ids
