"""Prediction: face detection on real photos, every image format, bad input, Grad-CAM, the CLI."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.inference.faces import Box, crop_face, default_detector, iou
from fer_core.inference.loader import load_model, resolve_model
from fer_core.inference.explain import gradcam, overlay
from fer_core.inference.photo import analyse, draw, find_faces

skimage_data = pytest.importorskip("skimage.data")  # ships the public-domain astronaut photo
FACE = Box(177, 67, 93, 93)  # Eileen Collins' face in skimage's astronaut.png, found by hand


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def model_and_classes(trained_run):
    ref = resolve_model(trained_run)
    return load_model(ref), ref.classes


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def gray(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L"))


# ------------------------------------------------------------------ detection
def test_detector_finds_the_face_in_a_real_photo_dark_bright_and_huge(astronaut):
    g = gray(astronaut)
    for variant in (g, (g * 0.25).astype(np.uint8), (255 - (255 - g.astype(float)) * 0.3).astype(np.uint8)):
        boxes = default_detector().detect(variant)
        assert len(boxes) == 1 and iou(boxes[0], FACE) > 0.6, boxes
    huge = np.asarray(astronaut.convert("L").resize((4096, 4096)))  # detected on a downscaled copy
    (box,) = default_detector().detect(huge)
    assert iou(Box(box.x // 8, box.y // 8, box.w // 8, box.h // 8), FACE) > 0.6


def test_detector_finds_a_head_turned_sideways():
    camera = skimage_data.camera()  # the cameraman, head turned to his right
    boxes = default_detector().detect(camera)
    assert len(boxes) >= 1 and all(b.w > 40 for b in boxes)


@pytest.mark.real_data
def test_detector_finds_real_faces_in_a_group_shot(real_data_dir):
    from fer_core.data.loading import load_dataset

    faces = load_dataset(real_data_dir).subset("PrivateTest")
    rng = np.random.default_rng(3)
    found = 0
    for trial in range(3):
        canvas = np.full((700, 1300), 120, np.uint8)
        spots = [(40 + i * 310, 60 + (i % 2) * 320) for i in range(4)]
        for (x, y), i in zip(spots, rng.choice(len(faces), 4, replace=False)):
            canvas[y:y + 256, x:x + 256] = np.asarray(Image.fromarray(faces.images[i]).resize((256, 256), Image.BICUBIC))
        boxes = default_detector().detect(canvas)
        found += sum(any(iou(b, Box(x, y, 256, 256)) > 0.5 for b in boxes) for x, y in spots)
    assert found >= 8, f"found {found} of 12 FER faces"  # FER2013 holds profiles and occluded faces too


def test_crop_is_framed_like_fer2013_and_pads_past_the_border():
    from fer_core.inference.faces import FER_FRAME

    img = np.tile(np.arange(100, dtype=np.uint8), (100, 1))  # each pixel holds its column number
    crop = crop_face(img, Box(30, 30, 40, 40))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # a square of the box's side times FER2013's framing, centred on the box: columns 29..70
    side = 40 * FER_FRAME
    assert abs(int(crop[24, 0]) - (50 - side / 2)) <= 1.5 and abs(int(crop[24, -1]) - (50 + side / 2)) <= 1.5
    assert np.all(np.diff(crop[24].astype(int)) >= 0) and (crop == crop[0]).all()  # every row the same ramp
    edge = crop_face(img, Box(80, 80, 40, 40))  # runs off the bottom-right corner: edges replicated
    cols = (99 - (100 - side / 2)) / side * 48  # where column 99 (the last real one) lands in the crop
    assert (edge[:, int(cols) + 2:] == 99).all() and abs(int(edge[0, 0]) - (100 - side / 2)) <= 1.5


# --------------------------------------------------------------- image formats
def formats(astronaut):
    rgb = astronaut
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    sixteen = Image.fromarray(gray(rgb).astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": stored turned on its side
    return {
        "photo.jpg": encode(rgb, "JPEG", quality=90), "photo.png": encode(rgb, "PNG"),
        "photo.webp": encode(rgb, "WEBP"), "photo.bmp": encode(rgb, "BMP"),
        "photo.gif": encode(rgb.convert("P"), "GIF"), "rgba.png": encode(rgba, "PNG"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"), "sixteen.png": encode(sixteen, "PNG"),
        "phone.jpg": encode(rgb.rotate(90, expand=True), "JPEG", exif=exif),
    }


def test_every_format_finds_the_face(astronaut, model_and_classes):
    model, classes = model_and_classes
    files = formats(astronaut)
    results = analyse(list(files.items()), model, classes)
    for res in results:
        assert res.error is None, res.error
        assert res.size == (512, 512), res.file  # the phone photo is turned upright
        assert len(res.faces) == 1 and iou(res.faces[0].box, FACE) > 0.5, (res.file, res.faces)
        face = res.faces[0]
        assert face.crop.shape == (48, 48) and face.proba.sum() == pytest.approx(1, abs=1e-4)
        assert face.label in classes


def test_small_crops_skip_detection_and_no_detect_takes_the_whole_image(astronaut, model_and_classes):
    model, classes = model_and_classes
    small = encode(astronaut.convert("L").crop((FACE.x, FACE.y, FACE.x + 93, FACE.y + 93)).resize((48, 48)), "PNG")
    big = encode(astronaut, "PNG")
    (a,) = analyse([("crop.png", small)], model, classes)
    assert not a.detected and a.faces[0].box.as_list() == [0, 0, 48, 48]
    (b,) = analyse([("whole.png", big)], model, classes, detect="never")
    assert not b.detected and b.faces[0].box.as_list() == [0, 0, 512, 512]
    boxes, detected = find_faces(gray(astronaut), "always")
    assert detected and len(boxes) == 1


def test_bad_input_gives_messages_not_tracebacks(astronaut, model_and_classes, tmp_path):
    model, classes = model_and_classes
    jpeg = encode(astronaut, "JPEG")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400), dtype=np.uint8))
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")  # 100 megapixels in a few kB
    results = analyse([("notes.jpg", b"just some text"), ("cut.jpg", jpeg[:len(jpeg) // 3]), ("empty.png", b""),
                       ("noise.png", encode(noise, "PNG")), ("bomb.png", bomb), ("fine.jpg", jpeg)],
                      model, classes)
    errors = {r.file: r.error for r in results}
    assert "not an image" in errors["notes.jpg"]
    assert "truncated" in errors["cut.jpg"] and "empty" in errors["empty.png"]
    assert "too large" in errors["bomb.png"]
    assert errors["noise.png"] is None and results[3].faces == []  # read fine, no face
    assert errors["fine.jpg"] is None and len(results[5].faces) == 1  # the good file is kept


def test_gradcam_and_drawing(astronaut, model_and_classes):
    model, classes = model_and_classes
    (res,) = analyse([("photo.png", encode(astronaut, "PNG"))], model, classes, explain=True, tta="tencrop")
    cam = res.faces[0].cam
    assert cam.shape == (48, 48) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert overlay(res.faces[0].crop, cam).shape == (192, 192, 3)
    faces = np.stack([res.faces[0].crop] * 2)
    maps = [m for m, _ in gradcam(model, faces, np.array([0, 3]))]
    assert len(maps) == 2 and all(m is not None for m in maps)
    assert not np.allclose(maps[0], maps[1])  # each class has its own evidence
    assert draw(res).size == (512, 512)


# ------------------------------------------------------------------------- CLI
def test_cli_json_and_exit_status(astronaut, no_default_model, run_in_data, tmp_path, capsys):
    good = tmp_path / "photo.jpg"
    good.write_bytes(encode(astronaut, "JPEG"))
    crop = tmp_path / "face.png"
    crop.write_bytes(encode(astronaut.convert("L").resize((48, 48)), "PNG"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    assert main(["predict", str(good), str(crop), "--json"]) == 0  # the newest finished run is used
    out = json.loads(capsys.readouterr().out)
    assert [o["file"] for o in out] == [str(good), str(crop)]
    (face,) = out[0]["faces"]
    assert iou(Box(*face["box"]), FACE) > 0.5 and face["label"] in face["probabilities"]
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert main(["predict", "--model", str(run_in_data), "--no-detect", str(good), str(bad), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["faces"][0]["box"] == [0, 0, 512, 512] and "error" not in out[0]
    assert out[1]["faces"] == [] and "bad.jpg: not an image" in out[1]["error"]
    assert main(["predict", str(bad)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_explanations_that_cannot_apply_are_turned_off_with_a_reason(tmp_path):
    """A dense-only notation network trains fine; Predict then says why there is no heat map."""
    from fer_core.inference.explain import NO_CONV
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    run = train(TrainConfig(arch="F", data="demo:10", epochs=1), tmp_path / "dense")
    ref = resolve_model(str(run))
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    (res,) = analyse([("face.png", encode(Image.fromarray(face), "PNG"))], load_model(ref), ref.classes,
                     explain=True)
    assert res.faces[0].cam is None and res.faces[0].cam_note == NO_CONV
    out = res.to_json(ref.classes, explain=True)
    assert out["faces"][0]["gradcam"] is None and "no convolution" in out["faces"][0]["gradcam_note"]


@pytest.mark.real_data
def test_gradcam_of_the_shipped_model_is_informative_on_real_faces(real_data_dir):
    """On 200 PrivateTest faces the map is non-constant for nearly all, and it sits on the face
    (the inner region where eyes, nose and mouth are) rather than on the border."""
    from fer_core.data.loading import load_dataset

    ref = resolve_model("default")
    model = load_model(ref)
    faces = load_dataset(real_data_dir).subset("PrivateTest").images[:200]
    targets = model(faces[..., None], training=False).numpy().argmax(1)
    maps = gradcam(model, faces, targets)
    informative = [m for m, _ in maps if m is not None and m.max() - m.min() > 0.1]
    assert len(informative) >= 0.95 * len(faces), len(informative)
    inner = np.zeros((48, 48), bool)
    inner[10:42, 8:40] = True  # 44% of the face
    share = np.mean([m[inner].sum() / m.sum() for m in informative])
    assert share > 0.6, share


def test_labels_are_drawn_outside_small_face_crops(model_and_classes):
    """A 96x96 face crop: its whole image is the face, so the label gets a band above the photo
    instead of covering the forehead (the old drawing painted it over the face's top rows)."""
    model, classes = model_and_classes
    face = np.random.default_rng(0).integers(60, 200, (96, 96), dtype=np.uint8)
    (res,) = analyse([("crop.png", encode(Image.fromarray(face), "PNG"))], model, classes, tta="none")
    assert not res.detected and len(res.faces) == 1
    picture = np.asarray(draw(res).convert("L"))
    k = 240 / 96  # drawn at least 240 px wide
    band = picture.shape[0] - round(96 * k)
    assert picture.shape[1] == 240 and band > 0
    inner = picture[band + 4:-4, 4:-4]  # the face inside its box outline
    expected = np.asarray(Image.fromarray(face).resize((240, 240), Image.Resampling.BICUBIC))[4:-4, 4:-4]
    assert np.abs(inner.astype(int) - expected).max() <= 2  # not one pixel of the face painted over
