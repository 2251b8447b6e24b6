"""Video: sampled frames, tracks, timelines, the annotated WebM, bad files, and agreement with photos.

Every clip is made here with OpenCV from scikit-image's public-domain astronaut photo.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer_core.cli import main
from fer_core.errors import ConfigError, DataError
from fer_core.inference.faces import Box, iou
from fer_core.inference.photo import analyse
from fer_core.inference.tracking import TRACK_GAP, Tracker
from fer_core.inference.video import analyse_video, analyse_video_bytes, open_video, probe_video, sampled_frames

W, H = 640, 480


def photo_bgr() -> np.ndarray:
    """The astronaut (one face, about 110 px) in a 640x480 frame."""
    return cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (W, H))


def two_faces(t: float) -> np.ndarray:
    """Two astronaut heads on a grey background, drifting apart as ``t`` (seconds) grows."""
    head = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)[30:230, 140:310], (136, 160))
    frame = np.full((H, W, 3), 110, np.uint8)
    for x, y in ((60 - round(10 * t), 150), (420 + round(10 * t), 130)):
        frame[y:y + 160, x:x + 136] = head
    return frame


def make_clip(path: Path, frames, fps: float = 10, codec: str = "MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (W, H))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_a_video_with_huge_frames_is_refused_before_any_frame_is_decoded(tmp_path, capsys, monkeypatch):
    """Regression: a 16.5 MB MJPEG AVI of 40 frames at 8192x8192 took a server from 1.3 to 3.5 GB
    (videos had no pixel cap; photos stop at 60 MP). The cap is 4K UHD; here lowered to keep the
    test small: a 640x480 clip against a 0.2-MP cap."""
    clip = make_clip(tmp_path / "big.avi", [photo_bgr()] * 3)
    monkeypatch.setenv("FER_MAX_VIDEO_PIXELS", "200000")
    with pytest.raises(DataError, match=r"frames are 640x480 \(0.3 megapixels\).*up to 0.2 megapixels"):
        open_video(clip)
    assert main(["predict", str(clip)]) == 1
    assert "Scale it down first" in capsys.readouterr().out
    with pytest.raises(DataError, match="big.avi: its frames are 640x480"):  # the page says so before Analyse
        probe_video(clip.read_bytes(), "big.avi")
    monkeypatch.delenv("FER_MAX_VIDEO_PIXELS")
    assert open_video(clip).isOpened()  # 0.3 MP is far under the default cap


def test_frames_are_sampled_at_the_chosen_rate_and_streamed(tmp_path):
    clip = make_clip(tmp_path / "count.avi", (np.full((H, W, 3), i * 4, np.uint8) for i in range(30)), fps=30)
    cap = open_video(clip)
    times = [round(t, 3) for t, _ in sampled_frames(cap, 5)]
    assert times == [0.0, 0.2, 0.4, 0.6, 0.8]
    cap = open_video(clip)
    assert len(list(sampled_frames(cap, 60))) == 30  # never more frames than the video has


def test_predict_video_json_has_frames_tracks_and_summaries(tmp_path, capsys, shipped_engine):
    clip = make_clip(tmp_path / "two.avi", (two_faces(i / 10) for i in range(20)), fps=10)
    out = tmp_path / "annotated.webm"
    assert main(["predict", str(clip), "--fps", "5", "--json", "--tta", "none", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["file"] == str(clip) and doc["fps"] == 5 and doc["size"] == [W, H] and doc["duration"] == 2.0
    assert [f["t"] for f in doc["frames"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    for frame in doc["frames"]:
        left, right = sorted(frame["faces"], key=lambda f: f["box"][0])
        assert (left["track"], right["track"]) == (1, 2)  # each face keeps its track as it moves
        for face in (left, right):
            assert set(face) == {"box", "track", "angle", "label", "probabilities"}
            assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
            assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert [(t["track"], t["first"], t["last"]) for t in doc["tracks"]] == [(1, 0.0, 1.8), (2, 0.0, 1.8)]
    for track in doc["tracks"]:
        labels = [f["label"] for fr in doc["frames"] for f in fr["faces"] if f["track"] == track["track"]]
        assert track["share"] == {c: round(labels.count(c) / len(labels), 4) for c in shipped_engine[1]}
        assert track["dominant"] == max(labels, key=labels.count)
    video = cv2.VideoCapture(str(out))  # the annotated video: WebM, VP8, one frame per analysed frame
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert int(video.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP80"
    ok, first = video.read()
    assert ok and first.shape == (H, W, 3)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("codec,suffix", [("FFV1", ".mkv"), ("MJPG", ".avi"), ("VP80", ".webm")])
def test_a_face_gets_the_same_box_and_label_in_a_photo_and_in_a_video_of_it(tmp_path, shipped_engine, codec, suffix):
    model, classes = shipped_engine
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), photo_bgr())
    (still,) = analyse([(photo.name, photo)], model, classes, tta="none")
    (face,) = still.faces
    clip = make_clip(tmp_path / f"still{suffix}", [photo_bgr()] * 6, fps=6, codec=codec)
    result = analyse_video(clip, model, classes, fps=6, tta="none")
    assert len(result.frames) == 6
    for frame in result.frames:
        (seen,) = frame.faces
        assert seen.track == 1 and iou(seen.box, face.box) > 0.85
        assert seen.label == face.label and np.abs(seen.proba - face.proba).max() < (0.02 if codec == "FFV1" else 0.1)


def test_tracks_end_after_a_gap_and_survive_a_fast_move():
    tracker = Tracker()
    a, b = Box(100, 100, 80, 80), Box(400, 100, 80, 80)
    assert tracker.assign(0.0, [a, b]) == [1, 2]
    assert tracker.assign(0.2, [Box(430, 100, 80, 80), Box(105, 102, 80, 80)]) == [2, 1]  # order does not matter
    assert tracker.assign(0.4, [Box(140, 100, 80, 80)]) == [1]  # 35 px in one step: near, not overlapping enough
    assert tracker.assign(0.4 + TRACK_GAP + 0.2, [Box(140, 100, 80, 80)]) == [3]  # unseen too long: a new face
    assert tracker.assign(1.8, [Box(140, 100, 200, 200)]) == [4]  # same place, another size: not the same face


@pytest.mark.parametrize("name,content,why", [
    ("garbage.mp4", b"not a video at all " * 40, "cannot be read as a video"),
    ("empty.webm", b"", "the file is empty"),
])
def test_a_bad_video_gives_a_clear_error_and_exit_status_1(tmp_path, capsys, name, content, why):
    bad = tmp_path / name
    bad.write_bytes(content)
    assert main(["predict", str(bad)]) == 1
    assert f"{bad}: error: {bad}: {why}" in capsys.readouterr().out
    assert main(["predict", str(bad), "--json"]) == 1
    assert why in json.loads(capsys.readouterr().out)["error"]


def test_a_truncated_video_keeps_its_readable_frames_or_says_why(tmp_path, shipped_engine):
    clip = make_clip(tmp_path / "whole.webm", [photo_bgr()] * 20, fps=10, codec="VP80")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    try:
        result = analyse_video(cut, *shipped_engine, fps=10, tta="none")
    except DataError as exc:
        assert "cut.webm" in str(exc)
    else:
        assert 0 < len(result.frames) < 20 and all(len(f.faces) == 1 for f in result.frames)


def test_wrong_options_are_refused_before_any_work(tmp_path, capsys, shipped_engine):
    clip = make_clip(tmp_path / "c.avi", [photo_bgr()] * 3)
    with pytest.raises(ConfigError, match="ending in .webm"):
        analyse_video(clip, *shipped_engine, out=tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="above 0"):
        analyse_video(clip, *shipped_engine, fps=0)
    assert main(["predict", str(clip), str(clip), "--out", str(tmp_path / "x.webm")]) == 2
    assert "--out names one annotated video" in capsys.readouterr().err


def test_cancel_keeps_what_was_analysed_and_writes_no_video(tmp_path, shipped_engine):
    clip = make_clip(tmp_path / "long.avi", [photo_bgr()] * 40, fps=10)
    out = tmp_path / "never.webm"
    asked, seen = [], []

    def cancel() -> bool:  # a user pressing Cancel while the 12th frame is analysed
        asked.append(1)
        return len(asked) >= 12

    result = analyse_video(clip, *shipped_engine, fps=10, tta="none", out=out, progress=lambda d, t: seen.append((d, t)),
                           cancel=cancel)
    assert result.cancelled and len(result.frames) == 12 and all(f.faces[0].label for f in result.frames)
    assert not list(tmp_path.glob("never*")) and seen[-1] == (1.1, 4.0)


def test_an_uploaded_video_is_analysed_from_bytes_and_its_annotated_copy_returned(tmp_path, shipped_engine):
    clip = make_clip(tmp_path / "up.avi", [photo_bgr()] * 5, fps=5)
    result, webm = analyse_video_bytes(clip.read_bytes(), "my clip.avi", *shipped_engine, fps=5, tta="none", annotated=True)
    assert result.file == "my clip.avi" and len(result.frames) == 5 and webm[:4] == b"\x1a\x45\xdf\xa3"  # EBML
    rows = result.timeline(1)
    assert len(rows) == 5 * len(shipped_engine[1]) and {r["t"] for r in rows} == {0.0, 0.2, 0.4, 0.6, 0.8}


def test_a_long_video_is_cut_at_the_limit_and_says_so_before_the_work(tmp_path, capsys, monkeypatch, shipped_engine):
    """Regression: a 2-hour video was analysed whole (every frame, hundreds of seconds of a core)."""
    clip = make_clip(tmp_path / "long.avi", (np.full((H, W, 3), i, np.uint8) for i in range(40)), fps=10)  # 4 s
    monkeypatch.setenv("FER_MAX_VIDEO_SECONDS", "1.5")
    assert main(["predict", str(clip), "--fps", "2", "--json", "--tta", "none"]) == 0
    captured = capsys.readouterr()
    assert "The video is 4 s long: only its first 1.5 s are analysed" in captured.err and "FER_MAX_VIDEO_SECONDS" in captured.err
    doc = json.loads(captured.out)
    assert [f["t"] for f in doc["frames"]] == [0.0, 0.5, 1.0] and doc["cut_at"] == 1.5
    assert "FER_MAX_VIDEO_SECONDS" in doc["note"]
    monkeypatch.setenv("FER_MAX_VIDEO_SECONDS", "600")
    monkeypatch.setenv("FER_MAX_VIDEO_FRAMES", "4")  # 4 frames at 5 per second: 0.8 s
    model, classes = shipped_engine
    result, _ = analyse_video_bytes(clip.read_bytes(), "long.avi", model, classes, fps=5)
    assert [f.t for f in result.frames] == [0.0, 0.2, 0.4, 0.6] and result.cut_at == 0.8
    from fer_core.inference.video import probe_video

    duration, note = probe_video(clip.read_bytes(), "long.avi", fps=5)
    assert duration == 4.0 and "4 frames at 5 per second" in note
    monkeypatch.setenv("FER_MAX_VIDEO_FRAMES", "100")
    assert probe_video(clip.read_bytes(), "long.avi", fps=5) == (4.0, None)  # it fits: nothing to say


def montage_frame(shot: int) -> np.ndarray:
    """Shot ``shot`` of a montage: the astronaut's head at a size and place of its own, on a
    background of its own (hard cuts between shots, faces roughly centred)."""
    head = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)[30:230, 140:310]
    side = 150 + 25 * (shot % 4)
    frame = np.full((H, W, 3), (40 + 45 * shot) % 230, np.uint8)
    x, y = W // 2 - side // 2 + 20 * (shot % 3 - 1), H // 2 - side // 2
    frame[y:y + side, x:x + round(side * 170 / 200)] = cv2.resize(head, (round(side * 170 / 200), side))
    return frame


def test_a_montage_gives_a_track_per_shot_and_a_shot_one_track(tmp_path, shipped_engine):
    """Regression: a montage of 30 photos with hard cuts gave 9 tracks, one of them 18 s long
    across 9 people. Tracks now end at a shot cut; within a shot one face keeps one track."""
    model, classes = shipped_engine
    shots = 5
    clip = make_clip(tmp_path / "montage.avi", (montage_frame(i // 10) for i in range(10 * shots)), fps=10)
    result = analyse_video(clip, model, classes, fps=5)
    tracks = result.tracks()
    assert len(tracks) == shots, [(t["track"], t["first"], t["last"]) for t in tracks]
    assert all(t["last"] - t["first"] < 1.0 for t in tracks)  # none spans a cut


def test_two_people_crossing_keep_their_tracks():
    """Position alone swaps two faces whose boxes cross; their appearance keeps them apart."""
    rng = np.random.default_rng(0)
    look_a, look_b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 324)).astype(np.float32))
    tracker = Tracker()
    seen = {"a": set(), "b": set()}
    for step in range(11):
        t = step * 0.2
        a, b = Box(100 + 30 * step, 100, 80, 80), Box(400 - 30 * step, 104, 80, 80)
        ids = tracker.assign(t, [b, a], [look_b + rng.normal(0, 0.02, 324).astype(np.float32), look_a])
        seen["b"].add(ids[0])
        seen["a"].add(ids[1])
    assert seen == {"a": {2}, "b": {1}}
    # one face leaves and comes back elsewhere within a second: its own track again
    assert tracker.assign(2.4, [Box(20, 300, 80, 80)], [look_a]) == [2]
    # a different face where the first one was: a new track, not the old one
    assert tracker.assign(2.6, [Box(22, 300, 80, 80)], [-look_a]) == [3]
    tracker.cut()
    assert tracker.assign(2.8, [Box(22, 300, 80, 80)], [look_b]) == [4]  # after a cut: someone new


def test_the_appearance_descriptor_tells_faces_apart(real_data_dir):
    """On real faces: a face against a slightly moved and relit copy of itself looks the same
    (above SAME_FACE), two different faces do not, in nearly every pair."""
    from fer_core.inference.tracking import SAME_FACE, appearance

    files = sorted((real_data_dir / "test").glob("*/PrivateTest_*"))[::40][:120]
    faces = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    rng = np.random.default_rng(1)

    def moved(face):
        m = cv2.getRotationMatrix2D((24, 24), rng.uniform(-4, 4), rng.uniform(0.97, 1.03))
        m[:, 2] += rng.uniform(-1.5, 1.5, 2)
        out = cv2.warpAffine(face, m, (48, 48), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        return np.clip(out * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10), 0, 255).astype(np.uint8)

    same = np.array([appearance(f) @ appearance(moved(f)) for f in faces])
    other = np.array([appearance(faces[i]) @ appearance(moved(faces[i - 1])) for i in range(len(faces))])
    assert (same >= SAME_FACE).mean() >= 0.95 and (other < SAME_FACE).mean() >= 0.95


def test_out_never_overwrites_a_file_and_a_bad_folder_is_refused_before_any_work(tmp_path, capsys):
    """Regression: `predict clip --out existing.webm` overwrote the file silently; an --out in a
    missing folder or under a file printed a traceback after the work."""
    clip = make_clip(tmp_path / "clip.avi", [photo_bgr()] * 3)
    mine = tmp_path / "mine.webm"
    mine.write_bytes(b"the user's own video")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out, why in ((mine, "already exists"), (tmp_path / "no" / "such.webm", "does not exist"),
                     (blocker / "x.webm", "is a file")):
        assert main(["predict", str(clip), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert mine.read_bytes() == b"the user's own video"


def test_a_short_annotated_video_is_an_error_not_a_success(tmp_path, capsys, monkeypatch):
    """Regression: `predict clip --out` on a full disk exited 0 with 6 of 10 frames written (OpenCV's
    writer says nothing). The written video is read back: a short one is refused and not kept."""
    from fer_core.inference import annotated

    real_init = annotated.VideoWriter.__init__

    class FullDisk:  # the encoder's frames stop reaching the file after the sixth, without a word
        def __init__(self, writer):
            self.writer, self.n = writer, 0

        def write(self, frame):
            self.n += 1
            if self.n <= 6:
                self.writer.write(frame)

        def release(self):
            self.writer.release()

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.writer = FullDisk(self.writer)

    monkeypatch.setattr(annotated.VideoWriter, "__init__", init)
    clip = make_clip(tmp_path / "clip.avi", [photo_bgr()] * 10, fps=5)
    out = tmp_path / "annotated.webm"
    assert main(["predict", str(clip), "--fps", "5", "--out", str(out)]) == 1
    assert "holds 6 of its 10 frames" in capsys.readouterr().out
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["clip.avi"]
