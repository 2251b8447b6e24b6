"""Prediction on photos: decode, find every face, classify them in one batch, explain with Grad-CAM."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fer_core.config import env_number
from fer_core.data.images import open_image, to_face_array
from fer_core.device import TENSORFLOW_ONLY, configured_backend
from fer_core.errors import FerError
from fer_core.inference.drawing import label_faces, label_height, label_scale
from fer_core.inference.faces import DEFAULT_DETECTOR, Box, FaceDetector, face_crop, face_json, get_detector
from fer_core.inference import explore
from fer_core.inference.explore import occlusion
from fer_core.inference.forward import keras_model, model_crop, predict_proba
from fer_core.models.ensemble import members as ensemble_members

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
    occlusion: np.ndarray | None = None  # occlusion sensitivity, 48x48 in [0, 1] (see fer_core.inference.explore)
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
        explain: also compute a Grad-CAM heat map per face.
        detector: "yunet" (the default), "haar", or a detector object.
        align: turn each face upright before cropping it (detectors that can tell the angle).
        occlude: also an occlusion-sensitivity map per face (:func:`fer_core.inference.explore.occlusion`).

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


CONV_LAYERS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
MIN_CAM_SIDE = 5  # a coarser map (2x2 after the last pooling) says little about where the model looked
NO_CONV = "This model has no convolution layer, so Grad-CAM has no spatial map to explain."
EMPTY_CAM = "Nothing to show: no region of this face raised the predicted class's score (the map is empty)."


def explanation_layer(model):
    """The layer Grad-CAM explains: the last convolution whose map is at least 5x5 (Selvaraju et
    al. use the last convolutional layer; after the last pooling the map is too coarse to show
    anything), else the last convolution or nested network; None for a model without one.

    On the shipped model and 200 PrivateTest faces, the last 5x5 convolution gave a non-empty map
    for all 200 and put 73% of its mass on the inner two thirds of the face; the ReLU after it
    gave 188 maps (12 empty) and 83%.
    """
    best, last = None, None
    for layer in model.layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is None or len(shape) != 4 or not (type(layer).__name__ in CONV_LAYERS or hasattr(layer, "layers")):
            continue
        last = layer
        if min(shape[1], shape[2]) >= MIN_CAM_SIDE:
            best = layer
    return best or last


def gradcam(model, faces: np.ndarray, targets: np.ndarray) -> list[tuple[np.ndarray | None, str | None]]:
    """Grad-CAM (Selvaraju et al. 2017), one ``(map, note)`` per face: a smooth 48x48 map in [0, 1],
    or None with a sentence saying why there is none (no convolution, or an empty map).

    The map covers the centre crop the model sees (the rest of the 48x48 face stays 0). For an
    ensemble (see :mod:`fer_core.models.ensemble`), each member explains the ensemble's class and the
    members' maps are averaged. It runs on TensorFlow only: under another Keras backend every face
    gets no map and a note that says so.
    """
    backend = configured_backend()
    if backend != "tensorflow":
        return [(None, TENSORFLOW_ONLY.format(what="Grad-CAM", backend=backend))] * len(faces)
    import tensorflow as tf

    model = keras_model(model)  # the engine's Keras model: Grad-CAM needs gradients
    parts = ensemble_members(model)
    if parts:
        return _mean_maps([gradcam(m, faces, targets) for m in parts])
    layer = explanation_layer(model)
    if layer is None:
        return [(None, NO_CONV)] * len(faces)
    x = tf.convert_to_tensor(faces[..., None].astype("float32"))
    cams = _cam_graph(model, layer)(x, tf.convert_to_tensor(np.asarray(targets, np.int32))).numpy()
    crop = model_crop(model)
    off = (faces.shape[1] - crop) // 2
    out_maps = []
    for cam in cams:
        top = float(cam.max())
        if not top > 0:
            out_maps.append((None, EMPTY_CAM))
            continue
        full = np.zeros(faces.shape[1:3], np.float32)
        resized = np.clip(tf.image.resize(cam[..., None] / top, (crop, crop), method="bicubic").numpy()[..., 0], 0, None)
        full[off:off + crop, off:off + crop] = resized / resized.max()  # smooth, and its peak is 1
        out_maps.append((full, None))
    return out_maps


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its Grad-CAM graph
_PROBES_LOCK = threading.Lock()


def _cam_graph(model, layer):
    """Grad-CAM's raw maps (N, h, w) for faces and target classes, as a TensorFlow graph built and
    traced once per model: an eager GradientTape through a member costs several times more for a
    few faces (sessions share models, so it is built under a lock)."""
    import keras
    import tensorflow as tf

    with _PROBES_LOCK:
        fn = _PROBES.get(model)
        if fn is None:
            probe = keras.Model(model.inputs, [layer.output, model.output])

            @tf.function(reduce_retracing=True)
            def fn(x, targets):
                with tf.GradientTape() as tape:
                    fmap, out = probe(x, training=False)
                    score = tf.reduce_sum(out * tf.one_hot(targets, tf.shape(out)[-1]), axis=1)
                grads = tape.gradient(score, fmap)
                weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                return tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))

            _PROBES[model] = fn
        return fn


def _mean_maps(per_member: list[list[tuple]]) -> list[tuple[np.ndarray | None, str | None]]:
    """Average the members' maps face by face (members with no map for a face are left out)."""
    out = []
    for maps in zip(*per_member):
        valid = [m for m, _ in maps if m is not None]
        if not valid:
            out.append((None, maps[0][1]))
            continue
        mean = np.mean(valid, axis=0)
        out.append((mean / mean.max(), None))
    return out


def overlay(face: np.ndarray, cam: np.ndarray, size: int = 192, alpha: float = 0.45) -> np.ndarray:
    """An RGB picture of a face with its heat map blended over it (JET colours)."""
    import cv2

    gray = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize((cam * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return (base * (1 - alpha) + colour * alpha).astype(np.uint8)


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


def face_views(model, face: np.ndarray) -> dict:
    """Everything the Explore page shows of one 48x48 face: its probabilities, each layer
    (:func:`~fer_core.inference.explore.layers`), Grad-CAM and occlusion maps (each ``(map,
    note)``) and the what-if probabilities."""
    face = np.asarray(face, np.uint8).reshape(48, 48)
    what = explore.what_if(model, face)
    target = int(what["as it is"].argmax())
    try:
        inside = explore.layers(model, face)
    except (FerError, ValueError) as exc:  # a network the probe cannot read: the rest still shows
        inside = {"model": "", "layers": [], "first_filters": [], "logits": [], "probabilities": [],
                  "note": f"Layer by layer is not available for this model ({exc})."}
    return {"proba": what["as it is"], "layers": inside,
            "gradcam": gradcam(model, face[None], np.array([target]))[0],
            "occlusion": explore.occlusion(model, face, target), "what_if": what}
