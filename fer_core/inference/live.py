"""A live camera: each frame's faces found, followed, classified and drawn, as fast as the machine
allows, with a readout a page refreshes once a second.

The camera's frames reach :meth:`LiveAnalyser.process` on a thread of the WebRTC component
(``streamlit-webrtc``, which itself keeps only the newest frame while one is being processed).
A frame that arrives while another is being analysed is never queued: it goes back at once with
the last boxes drawn on it (``dropped``), so the picture stays live and the labels follow at the
rate the analysis manages (``fps``). Faces are followed as in videos (:class:`fer_core.inference.tracking.Tracker`:
a track is a person) and classified without test-time augmentation unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

import numpy as np

from fer_core.inference.annotated import annotate
from fer_core.inference.faces import DEFAULT_DETECTOR, face_crop, get_detector
from fer_core.inference.forward import predict_proba
from fer_core.inference.tracking import TRACK_GAP, Tracker, appearance
from fer_core.inference.video import VideoFace, VideoFrame

#: Seconds of history kept for the timeline, and over which the analysed frame rate is measured.
WINDOW, RATE_WINDOW = 30.0, 2.0
#: The longer side a camera frame is looked at for faces: the people in front of a camera have
#: large faces, and at 320 px a 640x480 frame costs the detector a quarter of its full look.
LIVE_DETECT_SIDE = 320


class LiveAnalyser:
    """Analyses camera frames (BGR arrays) for one viewer; safe to call from any thread."""

    def __init__(self, model, classes: tuple[str, ...], detector: str = DEFAULT_DETECTOR, tta: str = "none",
                 clock=time.monotonic):
        self.model, self.classes, self.tta, self.clock = model, tuple(classes), tta, clock
        self.finder = get_detector(detector)
        self.busy = threading.Lock()  # one frame analysed at a time; the others are dropped
        self.state = threading.Lock()  # guards what the readout reads
        self.tracker = Tracker(gap=TRACK_GAP)
        self.current = VideoFrame(0.0)  # the last analysed frame's faces, drawn on dropped frames too
        self.analysed: deque = deque()  # times of analysed frames (the rate)
        self.history: deque = deque()  # (time, [(track, label, probability)...]) for the timeline
        self.dropped = 0
        self.started = clock()

    def process(self, bgr: np.ndarray) -> np.ndarray:
        """The frame with every face boxed, numbered and labelled: analysed now, or (when another
        frame is being analysed) drawn with the last result."""
        if not self.busy.acquire(blocking=False):
            with self.state:
                self.dropped += 1
                current = self.current
            return annotate(bgr, current)
        try:
            vf = self._analyse(bgr)
        finally:
            self.busy.release()
        return annotate(bgr, vf)

    def _analyse(self, bgr: np.ndarray) -> VideoFrame:
        import cv2

        now = self.clock()
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        boxes = self.finder.detect(gray, LIVE_DETECT_SIDE)
        crops = [face_crop(self.finder, gray, box, 0.0)[0] for box in boxes]
        vf = VideoFrame(round(now - self.started, 3))
        for box, track in zip(boxes, self.tracker.assign(now - self.started, boxes, [appearance(c) for c in crops])):
            vf.faces.append(VideoFace(box, track))
        if crops:
            proba = predict_proba(self.model, np.stack(crops), self.tta)
            for face, p in zip(vf.faces, proba):
                face.proba, face.label = p, self.classes[int(p.argmax())]
        with self.state:
            self.current = vf
            self.analysed.append(now)
            self.history.append((now, [(f.track, f.label, float(np.max(f.proba))) for f in vf.faces]))
            while self.analysed and now - self.analysed[0] > RATE_WINDOW:
                self.analysed.popleft()
            while self.history and now - self.history[0][0] > WINDOW:
                self.history.popleft()
        return vf

    def fps(self) -> float:
        """Frames analysed per second over the last two seconds (0 when the camera is off)."""
        now = self.clock()
        with self.state:
            recent = [t for t in self.analysed if now - t <= RATE_WINDOW]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def readout(self) -> str:
        """``1 face · 14.8 fps · face 1: happy 83%`` (faces in the last analysed frame, analysed frames
        per second, each face's emotion and probability, faces numbered by track)."""
        with self.state:
            faces = list(self.current.faces) if self.analysed and self.clock() - self.analysed[-1] <= RATE_WINDOW else []
        parts = [f"{len(faces)} face{'' if len(faces) == 1 else 's'}", f"{self.fps():.1f} fps"]
        parts += [f"face {f.track}: {f.label} {float(np.max(f.proba)):.0%}" for f in faces]
        return " · ".join(parts)

    def timeline(self) -> list[dict]:
        """Rows ``{"seconds ago", "track", "emotion", "probability"}`` of the last 30 seconds."""
        now = self.clock()
        with self.state:
            history = [(t, faces) for t, faces in self.history if now - t <= WINDOW]
        return [{"seconds ago": round(t - now, 2), "track": track, "emotion": label, "probability": p}
                for t, faces in history for track, label, p in faces]


def page_url(url: str | None, headers: Mapping[str, str] | None = None) -> str | None:
    """The address the browser shows the app at: ``url`` when the browser told it (Streamlit's
    ``st.context.url``), else its ``Origin`` header, or ``Host`` with the scheme a proxy names in
    ``X-Forwarded-Proto``; None when none says. Header names are matched in any case."""
    if url:
        return url
    found = {k.lower(): v for k, v in (headers or {}).items()}
    if found.get("origin") and found["origin"] != "null":
        return found["origin"]
    if found.get("host"):
        scheme = found.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
        return f"{scheme}://{found['host']}"
    return None


def camera_allowed(url: str) -> bool:
    """Whether a browser lets a page at ``url`` use the camera: only a secure context may, that
    is a page over HTTPS, or one on this machine itself (``localhost``, a ``*.localhost`` name,
    127.0.0.0/8 or ``[::1]``). A plain-HTTP page at a network address (``http://192.168.1.5:8502``,
    ``http://lecturer-laptop:8502``) gets no camera, and START then does nothing visible."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() in ("https", "wss"):
        return True
    host = (parts.hostname or "").rstrip(".")  # lower-cased, IPv6 brackets removed
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
