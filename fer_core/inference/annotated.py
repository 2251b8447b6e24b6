"""The annotated video: each face boxed, numbered by track and labelled on its frame, and the
WebM writer that encodes the frames beside the analysis."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from fer_core.device import quiet_stderr
from fer_core.errors import DataError
from fer_core.inference.drawing import label_faces

#: The annotated video: VP8 in WebM (OpenCV writes it and browsers play it), longer side at most this.
OUT_SUFFIX, OUT_CODEC, OUT_SIDE = ".webm", "VP80", 960
#: Box colours (BGR), one per track in turn.
PALETTE = ((0, 215, 255), (255, 128, 0), (80, 200, 60), (200, 60, 220), (60, 60, 230), (200, 200, 0))


def out_size(size: tuple[int, int]) -> tuple[int, int]:
    """The annotated video's frame size for a video of ``size``: the longer side at most OUT_SIDE."""
    k = min(1.0, OUT_SIDE / max(size))
    return max(2, round(size[0] * k / 2) * 2), max(2, round(size[1] * k / 2) * 2)  # VP8 wants even sides


class VideoWriter:
    """Writes annotated frames to a WebM on a thread of its own: VP8 encoding costs about as much
    as detecting faces, and OpenCV releases the GIL while it encodes, so the two overlap. The
    queue is bounded, so a slow encoder holds at most ``queue_size`` frames, never the video."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, queue_size: int = 16, larger: bool = False):
        import cv2

        w, h = out_size(size)
        with quiet_stderr():  # FFmpeg notes that the VP80 tag is not WebM's own, then writes VP8 anyway
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OUT_CODEC), fps, (w, h))
        if not self.writer.isOpened():
            raise DataError(f"{path}: cannot write a WebM video here (OpenCV's FFmpeg has no VP8 encoder, or the "
                            "folder is not writable).")
        self.path, self.sent, self.larger = Path(path), 0, larger
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="fer-video-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write(annotate(*item, larger=self.larger))
                except BaseException as exc:  # handed to the analysing thread by write()/close()
                    self.error = exc

    def write(self, frame: np.ndarray, vf) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((frame, vf))
        self.sent += 1

    def close(self) -> None:
        """Finish writing (waits for the queued frames) and close the file."""
        self.queue.put(None)
        self.thread.join()
        self.writer.release()
        if self.error is not None:
            raise self.error
        kept = readable_frames(self.path)
        if kept < self.sent:  # OpenCV's writer says nothing when the disk fills up
            raise DataError(f"{self.path}: the annotated video holds {kept} of its {self.sent} frames (the disk is full "
                            "or the folder stopped accepting writes); nothing was kept. Free some space and try again.")


def readable_frames(path: Path) -> int:
    """How many frames of a video can be read back (each decoded: VP8 at the output size is fast)."""
    import cv2

    with quiet_stderr():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        n = 0
        while cap.isOpened() and cap.grab():
            n += 1
        cap.release()
    return n


def annotate(frame: np.ndarray, vf, larger: bool = False) -> np.ndarray:
    """A BGR frame (at the output size) with each face of ``vf`` (a :class:`~fer_core.inference.video.VideoFrame`)
    boxed, numbered by track and labelled (:func:`~fer_core.inference.drawing.label_faces`; ``larger``:
    presentation mode's labels)."""
    import cv2

    w, h = out_size((frame.shape[1], frame.shape[0]))
    k = w / frame.shape[1]
    img = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if (w, h) != frame.shape[1::-1] else frame.copy()
    return label_faces(img, [(face.box.scaled(k), f"{face.track}: {face.label} {float(np.max(face.proba)):.0%}",
                              PALETTE[(face.track - 1) % len(PALETTE)]) for face in vf.faces],
                       thick=max(2, round(max(w, h) / 400)), larger=larger)
