"""The face detectors on public-domain pictures: turned, scaled, several faces, and no face."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer_core.cli import main
from fer_core.errors import ModelError
from fer_core.inference.faces import YUNET_FILE, Box, YuNetDetector, crop_face, get_detector, iou

FACE = Box(177, 64, 92, 113)  # the astronaut's face as YuNet boxes it, upright


def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)


def turned(gray: np.ndarray, degrees: float) -> np.ndarray:
    h, w = gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [-30, -20, -10, 10, 20, 30])
def test_yunet_finds_a_turned_face_and_turns_it_upright(degrees):
    det = get_detector("yunet")
    upright = crop_face(astronaut(), det.detect(astronaut())[0], frame=det.frame).astype(float)
    photo = turned(astronaut(), degrees)
    (box,) = [b for b in det.detect(photo) if b.score > 0.8]
    angle = det.upright_angle(photo, box)
    assert abs(angle + degrees) <= 12, angle  # turning it back by about as much as it was turned
    aligned = crop_face(photo, box, frame=det.frame, angle=angle).astype(float)
    plain = crop_face(photo, box, frame=det.frame).astype(float)

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    assert corr(aligned, upright) > 0.6 and corr(aligned, upright) > corr(plain, upright) - 0.02


@pytest.mark.parametrize("side", [24, 48, 120, 400, 1000])
def test_faces_from_24_px_to_the_whole_frame(side):
    face = astronaut()[40:200, 160:290]  # head and a margin: 130 x 160
    scaled = cv2.resize(face, (round(side * 130 / 92), round(side * 160 / 92)), interpolation=cv2.INTER_AREA)
    canvas = np.full((max(scaled.shape[0] + 40, 200), max(scaled.shape[1] + 40, 200)), 110, np.uint8)
    canvas[20:20 + scaled.shape[0], 20:20 + scaled.shape[1]] = scaled
    boxes = get_detector("yunet").detect(canvas)
    assert len(boxes) == 1 and abs(boxes[0].w - side) < 0.35 * side, (side, boxes)


def test_several_faces_in_one_picture_are_each_found():
    face = astronaut()[30:230, 140:310]
    canvas = np.full((520, 1100), 100, np.uint8)
    spots = [(20, 20), (380, 150), (720, 60)]
    for (x, y), size in zip(spots, (1.0, 0.8, 1.4)):
        f = cv2.resize(face, (round(170 * size), round(200 * size)))
        canvas[y:y + f.shape[0], x:x + f.shape[1]] = f
    boxes = get_detector("yunet").detect(canvas)
    assert len(boxes) == 3 and [b.x < 380 for b in boxes] == [True, False, False]


@pytest.mark.parametrize("picture", ["coffee", "chelsea", "rocket", "camera_blank", "brick", "grass", "gravel"])
def test_no_face_is_reported_in_pictures_without_one(picture):
    if picture == "camera_blank":
        gray = np.full((480, 640), 128, np.uint8)
    else:
        img = getattr(skimage_data, picture)()
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img.astype(np.uint8)
    assert get_detector("yunet").detect(gray) == []


def test_the_detector_file_is_checked_before_use(tmp_path):
    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(YUNET_FILE.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="damaged or replaced"):
        YuNetDetector(path=fake)
    with pytest.raises(ModelError, match="missing"):
        YuNetDetector(path=tmp_path / "nope.onnx")


def test_cli_records_the_detector_and_haar_stays_available(tmp_path, capsys):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), turned(astronaut(), 20))
    assert main(["predict", str(photo), "--json", "--tta", "none"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert out["detector"] == "yunet" and len(out["faces"]) == 1 and abs(out["faces"][0]["angle"] + 20) <= 12
    assert main(["predict", str(photo), "--json", "--tta", "none", "--detector", "haar"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert out["detector"] == "haar" and all(f["angle"] == 0 for f in out["faces"])
    assert iou(Box(*json.loads(json.dumps(FACE.as_list()))), FACE) == 1.0
