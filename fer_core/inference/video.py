"""Emotions in a video: frames sampled at a chosen rate, faces followed as tracks, a timeline
and a summary per track, and an annotated WebM.

The video is streamed (OpenCV's bundled FFmpeg reads one frame at a time): at most :data:`BATCH`
sampled frames are held at once, their faces are classified in one batch, and only the numbers per
face are kept, so memory stays flat however long the video is. Faces are found and cropped exactly
as in a photo (:mod:`fer_core.inference.faces`): a face gets the same prediction in a video.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fer_core.config import env_float, env_number
from fer_core.device import quiet_stderr
from fer_core.errors import ConfigError, DataError
from fer_core.files import atomic_write, check_readable
from fer_core.inference.annotated import OUT_SUFFIX, VideoWriter
from fer_core.inference.faces import (
    DEFAULT_DETECTOR,
    Box,
    FaceDetector,
    can_align,
    face_crop,
    face_json,
    get_detector,
    upright,
)
from fer_core.inference.forward import predict_proba
from fer_core.inference.tracking import Tracker, appearance, is_cut, thumbnail

#: Containers OpenCV's bundled FFmpeg reads (what an uploader should accept).
VIDEO_TYPES = ("mp4", "webm", "mov", "avi", "mkv", "m4v")
DEFAULT_FPS = 5.0  # frames analysed per second of video unless asked otherwise
MAX_FPS = 60.0


def video_limits() -> tuple[float, int]:
    """``(seconds, frames)``: the most of one video that is analysed (``FER_MAX_VIDEO_SECONDS``,
    ``FER_MAX_VIDEO_FRAMES``): by default the first 10 minutes, and at most 3,000 frames (10 minutes
    at the default 5 per second)."""
    return env_float("FER_MAX_VIDEO_SECONDS"), env_number("FER_MAX_VIDEO_FRAMES")


def analysed_span(fps: float, rate: float | None = None) -> float:
    """Seconds of video analysed at ``fps`` frames per second under :func:`video_limits`; a video
    with fewer frames per second (``rate``) gives only those, so its frame cap lasts longer."""
    seconds, frames = video_limits()
    return min(seconds, frames / min(check_fps(fps), rate or float("inf")))


def limit_note(duration: float | None, fps: float, rate: float | None = None) -> str | None:
    """The message for a video longer than what is analysed (None when it fits, or its length is
    not stated: then the analysis simply stops at the limit)."""
    span = analysed_span(fps, rate)
    if duration is None or duration <= span:
        return None
    per_second = min(fps, rate or fps)
    return (f"The video is {_clock(duration)} long: only its first {_clock(span)} are analysed "
            f"({min(video_limits()[1], int(round(span * per_second))):,} frames at {per_second:g} per second). "
            "FER_MAX_VIDEO_SECONDS and FER_MAX_VIDEO_FRAMES set the limit; cut the video into parts to analyse the rest.")


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def video_duration(cap) -> float | None:
    """Seconds, as the container states it (frame count over frame rate), or None."""
    import cv2

    rate, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return round(count / rate, 3) if rate > 0 and count > 0 else None


def video_rate(cap) -> float | None:
    """The video's own frames per second, as stated (None when not stated or implausible)."""
    import cv2

    rate = cap.get(cv2.CAP_PROP_FPS)
    return rate if 0 < rate <= 1000 else None


def video_timing_of(path: str | os.PathLike, name: str | None = None) -> tuple[float | None, float | None]:
    """A video file's stated ``(duration, frame rate)``; Nones when not stated or not readable
    (the analysis itself then says what is wrong). ``name``: how messages call the file."""
    try:
        cap = open_video(path, name)
    except FrameSizeError:
        raise  # said before any work: nothing of it will be analysed
    except DataError:
        return None, None
    try:
        return video_duration(cap), video_rate(cap)
    finally:
        cap.release()


def probe_video(data: bytes, name: str, fps: float = DEFAULT_FPS) -> tuple[float | None, str | None]:
    """``(duration, note)`` of an uploaded video before any work: its stated length and what
    :func:`limit_note` says of it.

    Raises:
        FrameSizeError: its frames are too large to analyse (refused before any is decoded).
    """
    suffix = Path(name).suffix.lower() if is_video(name) else ".mp4"
    with tempfile.TemporaryDirectory(prefix="fer-video-") as tmp:
        src = Path(tmp) / f"upload{suffix}"
        src.write_bytes(data)
        duration, rate = video_timing_of(src, name)
    return duration, limit_note(duration, fps, rate)


#: Sampled frames analysed together: their faces are classified in one batch.
BATCH = 8
#: A track's upright angle (see ``YuNetDetector.upright_angle``) is measured again at most
#: once per this many seconds: heads turn slowly, and measuring costs about as much as detecting.
ALIGN_EVERY = 1.0
def is_video(name: str | os.PathLike) -> bool:
    """Whether a file name has a video extension (:data:`VIDEO_TYPES`)."""
    return Path(name).suffix.lower().lstrip(".") in VIDEO_TYPES


@dataclass
class VideoFace:
    box: Box  # in the video's pixels
    track: int
    proba: np.ndarray | None = None
    label: str = ""
    angle: float = 0.0  # degrees the face was turned upright before it was cropped


@dataclass
class VideoFrame:
    t: float  # seconds from the start of the video
    faces: list[VideoFace] = field(default_factory=list)


@dataclass
class VideoResult:
    """What :func:`analyse_video` found; ``cancelled`` when it was stopped part-way (what was
    analysed until then is kept)."""

    file: str
    classes: tuple[str, ...]
    fps: float  # frames analysed per second of video
    detector: str
    size: tuple[int, int] | None = None  # (width, height)
    duration: float | None = None  # seconds, as the container states it (None: not stated)
    frames: list[VideoFrame] = field(default_factory=list)
    cancelled: bool = False
    error: str | None = None  # why the video could not be analysed (set by callers that go on)
    cut_at: float | None = None  # seconds: the analysis stopped here (video_limits), the rest unseen
    note: str | None = None  # what the user should know of the cut (see limit_note)

    def tracks(self) -> list[dict]:
        """One summary per track, in order of appearance: first and last time seen, the number
        of frames, the share of those frames given to each class, and the dominant class (the
        largest share; ties go to the higher mean probability)."""
        seen: dict[int, list[VideoFace]] = {}
        times: dict[int, list[float]] = {}
        for frame in self.frames:
            for face in frame.faces:
                seen.setdefault(face.track, []).append(face)
                times.setdefault(face.track, []).append(frame.t)
        out = []
        for track, faces in seen.items():
            counts = np.bincount([self.classes.index(f.label) for f in faces], minlength=len(self.classes))
            mean = np.mean([f.proba for f in faces], axis=0)
            dominant = max(range(len(self.classes)), key=lambda i: (counts[i], mean[i]))
            out.append({"track": track, "first": times[track][0], "last": times[track][-1], "frames": len(faces),
                        "dominant": self.classes[dominant],
                        "share": {c: round(n / len(faces), 4) for c, n in zip(self.classes, counts.tolist())}})
        return out

    def timeline(self, track: int) -> list[dict]:
        """Rows ``{"t", "class", "probability"}``: each class's probability over time for one track."""
        return [{"t": frame.t, "class": c, "probability": float(p)}
                for frame in self.frames for face in frame.faces if face.track == track
                for c, p in zip(self.classes, face.proba)]

    def to_json(self) -> dict:
        """The JSON of ``predict VIDEO --json``."""
        if self.error:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "fps": self.fps, "detector": self.detector,
                "size": list(self.size) if self.size else None, "duration": self.duration,
                **({"cut_at": self.cut_at, "note": self.note} if self.cut_at is not None else {}),
                "frames": [{"t": f.t, "faces": [
                    {**face_json(face.box, face.angle, face.label, face.proba, self.classes), "track": face.track}
                    for face in f.faces]} for f in self.frames],
                "tracks": self.tracks()}


def max_video_pixels() -> int:
    """Pixels of one video frame at most (``FER_MAX_VIDEO_PIXELS``, default 4K UHD): a decoded
    8192x8192 frame alone takes 200 MB, and a 16 MB MJPEG file can hold forty of them."""
    return env_number("FER_MAX_VIDEO_PIXELS")


class FrameSizeError(DataError):
    """A video's frames are larger than :func:`max_video_pixels` (said before any work)."""


def check_frame_size(width: int, height: int, label: str) -> None:
    """Raise FrameSizeError when a video's frames are larger than :func:`max_video_pixels`."""
    if width * height > max_video_pixels():
        raise FrameSizeError(f"{label}: its frames are {width}x{height} ({width * height / 1e6:.1f} megapixels); FER Studio "
                        f"analyses videos of up to {max_video_pixels() / 1e6:.1f} megapixels a frame (4K UHD). Scale "
                        "it down first, e.g. ffmpeg -i IN -vf scale=1920:-2 OUT.mp4.")


def check_out_file(out: Path) -> None:
    """Raise ConfigError, before any work, when ``out`` cannot be written as a new annotated video:
    not a ``.webm`` name, it exists (FER Studio never overwrites a file it did not write), or its
    folder is missing, a file, or not writable."""
    if out.suffix.lower() != OUT_SUFFIX:
        raise ConfigError(f"{out}: the annotated video is written as WebM (VP8, which browsers play); "
                          f"give a file name ending in {OUT_SUFFIX}.", field="out")
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out}: already exists; FER Studio does not overwrite it. Choose another name, or "
                          "delete it first.", field="out")
    parent = out.parent
    why = ("is a file" if parent.exists() else "does not exist") if not parent.is_dir() else \
        None if os.access(parent, os.W_OK) else "is not writable"
    if why:
        raise ConfigError(f"{out}: its folder {parent} {why}; choose a file in an existing, writable folder.", field="out")


def open_video(path: str | os.PathLike, name: str | None = None):
    """An opened ``cv2.VideoCapture``.

    Raises:
        DataError: no such file, FFmpeg cannot read it as a video, or its frames are larger than
            :func:`max_video_pixels` (checked before any frame is decoded).
    """
    import cv2

    label = name or str(path)
    check_readable(path, label)
    with quiet_stderr():  # FFmpeg's own complaints ("moov atom not found") go to fd 2
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise DataError(f"{label}: cannot be read as a video (not a video, damaged, or in a format OpenCV's "
                        f"FFmpeg does not read). Use {', '.join(VIDEO_TYPES[:4]).upper()} (H.264, VP8/VP9, MJPEG).")
    try:
        check_frame_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), label)
    except DataError:
        cap.release()
        raise
    return cap


def sampled_frames(cap, fps: float):
    """``(t, BGR frame)`` for the frames at 0, 1/fps, 2/fps... seconds (the first frame at or
    after each time), decoded one at a time. Times come from the frame index and the stated
    frame rate, or from the container's timestamps when no rate is stated."""
    import cv2

    rate = cap.get(cv2.CAP_PROP_FPS)
    rate = rate if 0 < rate <= 1000 else 0.0
    index, due = 0, 0.0
    while cap.grab():
        t = index / rate if rate else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        index += 1
        if t + 1e-6 < due:
            continue
        ok, frame = cap.retrieve()
        if not ok:
            break
        while due <= t + 1e-6:
            due += 1 / fps
        yield t, frame


def check_fps(fps: float) -> float:
    """``fps`` when it is a usable sampling rate, else ConfigError."""
    if not (isinstance(fps, (int, float)) and 0 < fps <= MAX_FPS):
        raise ConfigError(f"Frames per second {fps!r}: use a number above 0 and at most {MAX_FPS:g} "
                          f"(default {DEFAULT_FPS:g}).", field="fps")
    return float(fps)


def analyse_video(src: str | os.PathLike, model, classes: tuple[str, ...], *, name: str | None = None,
                  fps: float = DEFAULT_FPS, tta: str = "none", detector: str | FaceDetector = DEFAULT_DETECTOR,
                  align: bool = True, out: str | os.PathLike | None = None,
                  progress: Callable[[float, float | None], None] | None = None,
                  cancel: Callable[[], bool] | None = None, larger: bool = False) -> VideoResult:
    """Find, follow and classify every face of a video.

    Args:
        src: the video file.
        model, classes: a loaded model and its class names (see :func:`fer_core.inference.loader.load_model`).
        name: how to call the file in the result and in messages (default: the path).
        fps: frames analysed per second of video (every frame when the video has fewer).
        tta: test-time augmentation of the classifier.
        detector: "yunet" (the default), "haar" or a detector object.
        align: turn faces upright before cropping them (detectors that can tell the angle).
        out: also write the video with a numbered box and label on every face, as a WebM of the
            analysed frames (written to a temporary file, renamed when complete); ``larger``: its
            labels as presentation mode draws them.
        progress: called after each batch with (seconds of video analysed, the video's duration
            or None).
        cancel: called after each frame; when it returns True the analysis stops, the result is
            marked ``cancelled`` and ``out`` is not written.

    Raises:
        DataError: the file is missing, not a video, or holds no frame that can be decoded.
        ConfigError: ``fps`` out of range, or ``out`` not a ``.webm`` file.
    """
    fps = check_fps(fps)
    if out is not None:
        check_out_file(Path(out))
    finder = get_detector(detector) if isinstance(detector, str) else detector
    label = name or str(src)
    result = VideoResult(label, tuple(classes), fps, finder.name)
    cap = open_video(src, label)

    def work(tmp: Path | None) -> None:
        _run(cap, result, model, finder, tta, align, tmp, progress, cancel, larger)
        if not result.frames and not result.cancelled:
            raise DataError(f"{label}: no video frame could be decoded (the file is truncated, empty, holds only "
                            "audio, or uses a codec OpenCV's FFmpeg lacks).")
        if result.cancelled and tmp is not None:
            raise _Cancelled  # a partial annotated video is not kept

    try:
        if out is None:
            work(None)
        else:
            try:
                atomic_write(out, work)
            except _Cancelled:
                pass
    finally:
        cap.release()
    return result


def analyse_video_bytes(data: bytes, name: str, model, classes: tuple[str, ...], *, annotated: bool = False,
                        **options) -> tuple[VideoResult, bytes | None]:
    """:func:`analyse_video` for an uploaded file, which is written to a temporary file first
    (FFmpeg reads files) and removed afterwards; with ``annotated``, also the annotated WebM's
    bytes (None when cancelled)."""
    suffix = Path(name).suffix.lower() if is_video(name) else ".mp4"
    with tempfile.TemporaryDirectory(prefix="fer-video-") as tmp:
        src, out = Path(tmp) / f"upload{suffix}", Path(tmp) / f"annotated{OUT_SUFFIX}"
        src.write_bytes(data)
        result = analyse_video(src, model, classes, name=name, out=out if annotated else None, **options)
        return result, out.read_bytes() if annotated and out.exists() else None


class _Cancelled(Exception):
    """Raised inside an atomic write so that a cancelled video is not kept."""


def _run(cap, result: VideoResult, model, finder, tta, align, out_path, progress, cancel, larger=False) -> None:
    import cv2

    result.duration, rate = video_duration(cap), video_rate(cap)
    span, max_frames = analysed_span(result.fps, rate), video_limits()[1]
    count, previous = 0, None  # previous: the last sampled frame's thumbnail (shot cuts)
    tracker, angles = Tracker(), {}  # angles: track -> (degrees, time measured)
    turns = align and can_align(finder)
    writer, pending = None, []  # pending: (VideoFrame, crops, BGR frame for the output or None)
    try:
        for t, frame in sampled_frames(cap, result.fps):
            if t >= span or count >= max_frames:  # the limit: the rest is not analysed, and the result says so
                result.cut_at = round(min(span, t), 3)
                result.note = limit_note(result.duration, result.fps, rate) or (
                    f"Only the first {_clock(span)} of the video were analysed (FER_MAX_VIDEO_SECONDS, "
                    "FER_MAX_VIDEO_FRAMES).")
                break
            count += 1
            if result.size is None:  # a container that did not state its frame size: the first frame tells
                check_frame_size(frame.shape[1], frame.shape[0], result.file)
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if result.size is None:
                result.size = (gray.shape[1], gray.shape[0])
                if out_path is not None:
                    writer = VideoWriter(out_path, result.size, result.fps, 2 * BATCH, larger)
            thumb = thumbnail(gray)
            if is_cut(previous, thumb):
                tracker.cut()  # a new shot: whoever appears is someone new
            previous = thumb
            boxes = finder.detect(gray)
            vf, crops = VideoFrame(round(t, 3)), []
            plain = [face_crop(finder, gray, box, 0.0)[0] for box in boxes]  # what each face looks like
            for box, face, track in zip(boxes, plain, tracker.assign(t, boxes, [appearance(c) for c in plain])):
                angle = 0.0
                if turns:
                    if track not in angles or t - angles[track][1] >= ALIGN_EVERY:
                        angles[track] = (upright(finder, gray, box), t)
                    angle = angles[track][0]
                crops.append(face_crop(finder, gray, box, angle)[0] if abs(angle) >= 1 else face)
                vf.faces.append(VideoFace(box, track, angle=angle))
            pending.append((vf, crops, frame if writer is not None else None))
            stop = cancel is not None and cancel()
            if len(pending) >= BATCH or stop:
                _classify(pending, result, model, tta, writer)
                pending = []
                if progress:
                    progress(result.frames[-1].t, min(result.duration, span) if result.duration else None)
            if stop:
                result.cancelled = True
                return
        _classify(pending, result, model, tta, writer)
        if progress and result.frames:
            end = min(result.duration or result.frames[-1].t, span)
            progress(end, min(result.duration, span) if result.duration else None)
    finally:
        if writer is not None:
            writer.close()


def _classify(pending, result: VideoResult, model, tta, writer) -> None:
    crops = [c for _, frame_crops, _ in pending for c in frame_crops]
    proba = predict_proba(model, np.stack(crops), tta) if crops else np.zeros((0, len(result.classes)))
    faces = [face for vf, _, _ in pending for face in vf.faces]
    for face, p in zip(faces, proba):
        face.proba, face.label = p, result.classes[int(p.argmax())]
    for vf, _, frame in pending:
        result.frames.append(vf)
        if writer is not None:
            writer.write(frame, vf)
