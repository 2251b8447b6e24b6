"""Prediction on photos: decode, find every face, classify them in one batch, explain each
(:mod:`fer_core.inference.explain`) and draw the photo with its faces labelled."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fer_core.config import env_number
from fer_core.data.images import open_image, to_face_array
from fer_core.errors import FerError
from fer_core.inference.drawing import label_faces, label_height, label_scale
from fer_core.inference.explain import gradcam, occlusion
from fer_core.inference.faces import DEFAULT_DETECTOR, Box, FaceDetector, face_crop, face_json, get_detector
from fer_core.inference.forward import predict_proba

#: An image no larger than this (each side) is taken to be a face crop already, like FER2013's.
FACE_CROP_SIDE = 128
#: Photos are decoded (and faces found) at no more than this longest side; boxes are given in
#: the full photo's pixels. 1,600 px keeps a face of a tenth of the photo over 100 px wide.
PHOTO_SIDE = 1600
#: Extensions of the photos the decoder reads (what an uploader should accept).
PHOTO_TYPES = ("jpg", "jpeg", "jfif", "jpe", "png", "webp", "bmp", "gif", "tif", "tiff")


def max_photos() -> int:
    """How many photos one upload may hold (``FER_MAX_PHOTOS``, default 20): the rest are refused."""
    return env_number("FER_MAX_PHOTOS")


def max_photo_bytes() -> int:
    """Bytes of photos one upload may hold (``FER_MAX_PHOTO_MB``, default 100 MB)."""
    return env_number("FER_MAX_PHOTO_MB") * 1_000_000


def within_limits(photos: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], str | None]:
    """The photos of one upload that are analysed (in order, at most :func:`max_photos` of them and
    :func:`max_photo_bytes` in all), and what was refused, by name (None when nothing was)."""
    kept, refused, total = [], [], 0
    for name, data in photos:
        if len(kept) < max_photos() and total + len(data) <= max_photo_bytes():
            kept.append((name, data))
            total += len(data)
        else:
            refused.append(f"{name} ({len(data) / 1e6:.1f} MB)")
    if not refused:
        return kept, None
    return kept, (f"Not analysed: {', '.join(refused[:5])}{' and others' if len(refused) > 5 else ''}. One upload takes "
                  f"at most {max_photos()} photos and {max_photo_bytes() / 1e6:.0f} MB in all (FER_MAX_PHOTOS, "
                  "FER_MAX_PHOTO_MB); upload the others in another batch, or smaller copies.")
DETECT_MODES = ("auto", "always", "never")


@dataclass
class Face:
    box: Box
    crop: np.ndarray  # the 48x48 uint8 face the model saw
    proba: np.ndarray
    label: str
    cam: np.ndarray | None = None  # Grad-CAM heat map, 48x48 in [0, 1]
    cam_note: str | None = None  # why there is no heat map, when there is none
    angle: float = 0.0  # degrees the face was turned to stand upright before it was cropped
    occlusion: np.ndarray | None = None  # occlusion sensitivity, 48x48 in [0, 1] (see fer_core.inference.explain)
    occlusion_note: str | None = None


@dataclass
class ImageResult:
    file: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of the full photo after EXIF rotation
    detected: bool = True  # False: the whole image was taken as the face
    image: object | None = None  # the decoded PIL image (at most PHOTO_SIDE), for drawing
    detector: str = ""  # the face detector that found the faces ("" when none ran)

    def to_json(self, classes: tuple[str, ...], explain: bool = False) -> dict:
        """The result as JSON; with ``explain``, each face's Grad-CAM map (48x48 values in 0-1)
        under ``gradcam``, or null and the reason under ``gradcam_note``, and its occlusion map
        under ``occlusion`` (or null and ``occlusion_note``)."""
        out = {"file": self.file, "detector": self.detector or None, "faces": []}
        for f in self.faces:
            face = face_json(f.box, f.angle, f.label, f.proba, classes)
            if explain:
                face["gradcam"] = None if f.cam is None else np.round(f.cam, 3).tolist()
                if f.cam is None:
                    face["gradcam_note"] = f.cam_note or "Grad-CAM was not computed."
                face["occlusion"] = None if f.occlusion is None else np.round(f.occlusion, 3).tolist()
                if f.occlusion is None:
                    face["occlusion_note"] = f.occlusion_note or "Occlusion was not computed."
            out["faces"].append(face)
        if self.error:
            out["error"] = self.error
        return out


def find_faces(gray: np.ndarray, detect: str = "auto", detector: FaceDetector | None = None) -> tuple[list[Box], bool]:
    """Face boxes of a grayscale image, and whether a detector found them.

    ``detect``: "auto" treats a small image (both sides <= 128 px) as one face crop and runs the
    detector otherwise; "always" always detects; "never" takes the whole image as the face.
    """
    h, w = gray.shape
    whole = [Box(0, 0, w, h)]
    if detect == "never" or (detect == "auto" and max(h, w) <= FACE_CROP_SIDE):
        return whole, False
    return (detector or get_detector()).detect(gray), True


def analyse(images: list[tuple[str, bytes | str | Path]], model, classes: tuple[str, ...], *, detect: str = "auto",
            tta: str = "none", explain: bool = False, detector: str | FaceDetector = DEFAULT_DETECTOR,
            align: bool = True, occlude: bool = False) -> list[ImageResult]:
    """Decode each image, find its faces and classify all faces of all images in one batch.

    Args:
        images: ``(name, bytes or path)`` pairs.
        model: a loaded model (see :func:`fer_core.inference.loader.load_model`).
        classes: its class names.
        detect: see :func:`find_faces`.
        tta: test-time augmentation, "none", "flip" or "tencrop".
        explain: also compute a Grad-CAM heat map per face (:func:`fer_core.inference.explain.gradcam`).
        detector: "yunet" (the default), "haar", or a detector object.
        align: turn each face upright before cropping it (detectors that can tell the angle).
        occlude: also an occlusion-sensitivity map per face (:func:`fer_core.inference.explain.occlusion`).

    Returns:
        One result per image, in order; an image that cannot be read has ``error`` set, and one
        with no face has an empty ``faces`` list. Never raises for bad files.
    """
    results, crops, owners = [], [], []
    finder = get_detector(detector) if isinstance(detector, str) else detector
    for name, src in images:
        res = ImageResult(str(name))
        try:
            im = open_image(src, name=str(name), max_side=PHOTO_SIDE)
            res.image, res.size = im, im.info.get("original_size", im.size)
            gray = np.asarray(im.convert("L"), dtype=np.uint8)
            boxes, res.detected = find_faces(gray, detect, finder)
            res.detector = finder.name if res.detected else ""
            scale = res.size[0] / im.size[0]
            for box in boxes:
                crop, turn = face_crop(finder, gray, box, None if align else 0.0) if res.detected else (_whole(gray), 0.0)
                res.faces.append(Face(box.scaled(scale) if scale != 1 else box, crop, np.zeros(len(classes)), "",
                                      angle=turn))
                crops.append(crop)
                owners.append(res)
        except FerError as exc:
            res.error = str(exc)
        results.append(res)
    if crops:
        batch = np.stack(crops)
        proba = predict_proba(model, batch, tta)
        cams = gradcam(model, batch, proba.argmax(axis=1)) if explain else [(None, None)] * len(batch)
        faces = [f for r in results for f in r.faces]
        for face, p, (cam, note) in zip(faces, proba, cams):
            face.proba, face.label, face.cam, face.cam_note = p, classes[int(p.argmax())], cam, note
            if occlude:
                face.occlusion, face.occlusion_note = occlusion(model, face.crop, int(p.argmax()))
    return results


def _whole(gray: np.ndarray) -> np.ndarray:
    return to_face_array(Image.fromarray(gray, "L"))


#: Small photos are drawn at least this large, so that a label does not dwarf the face.
DRAW_MIN_SIDE = 240


def draw(result: ImageResult, max_side: int = 1200, larger: bool = False):
    """The photo (RGB, scaled to ``max_side`` at most and DRAW_MIN_SIDE at least) with a numbered
    box and label on every face (:func:`~fer_core.inference.drawing.label_faces`, as on video
    frames; ``larger``: presentation mode's labels). A label goes above its box; where the box
    touches the top of the photo (a face crop, a face at the edge) a band is added above the photo
    for it, so no label ever covers a face."""
    im = result.image.convert("RGB")
    k = min(max_side / max(im.size), max(1.0, DRAW_MIN_SIDE / max(im.size)))
    if k != 1:
        im = im.resize((round(im.width * k), round(im.height * k)),
                       Image.Resampling.BICUBIC if k > 1 else Image.Resampling.BILINEAR)
    scale = im.width / result.size[0]  # boxes are in the full photo's pixels
    size = label_scale(im.width, im.height, larger)
    tab = label_height(size)
    band = tab if any(f.box.y * scale < tab for f in result.faces) else 0
    img = np.full((im.height + band, im.width, 3), 255, np.uint8)
    img[band:] = np.asarray(im)
    faces = [(Box(round(f.box.x * scale), round(f.box.y * scale) + band, round(f.box.w * scale), round(f.box.h * scale)),
              f"{i}: {f.label} {f.proba.max():.0%}", (255, 215, 0)) for i, f in enumerate(result.faces, 1)]
    return Image.fromarray(label_faces(img, faces, thick=max(2, round(max(img.shape[:2]) / 300)), scale=size))
