"""The live camera: the analyser on its own (threads, dropped frames, the readout), then the
Predict page's live camera in Chromium with a fake camera (``tests/live_scenario.py``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from fer_core.inference.live import LiveAnalyser

from .live_scenario import READOUT

SCENARIO = Path(__file__).resolve().parent / "live_scenario.py"


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def frame() -> np.ndarray:
    return cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (640, 480))


def test_the_readout_says_faces_rate_and_each_emotion(shipped):
    ref, model = shipped
    classes = ref.classes
    clock = Clock()
    live = LiveAnalyser(model, classes, clock=clock)
    assert live.readout() == "0 faces · 0.0 fps"
    for _ in range(15):  # 15 frames a second for one second
        out = live.process(frame())
        clock.t += 1 / 15
    assert out.shape == (480, 640, 3) and not np.array_equal(out, frame())  # boxes drawn on the stream
    text = live.readout()
    assert READOUT.fullmatch(text), text
    assert text.startswith("1 face · 15.0 fps · face 1: ")
    rows = live.timeline()
    assert len(rows) == 15 and {r["track"] for r in rows} == {1} and all(-1.1 <= r["seconds ago"] <= 0 for r in rows)
    clock.t += 40
    assert live.timeline() == []  # only the last 30 seconds
    assert live.readout() == "0 faces · 0.0 fps"  # the camera stopped: nothing shown as current


def test_frames_that_arrive_during_an_analysis_are_dropped_not_queued(shipped):
    ref, model = shipped
    classes = ref.classes
    live = LiveAnalyser(model, classes)
    live.process(frame())  # warm: the graph is traced
    inside, release = threading.Event(), threading.Event()
    real = live._analyse

    def slow(bgr):
        inside.set()
        release.wait(30)
        return real(bgr)

    live._analyse = slow
    worker = threading.Thread(target=live.process, args=(frame(),))
    worker.start()
    assert inside.wait(30)
    out = live.process(frame())  # returns at once, drawn with the last result
    assert live.dropped == 1 and out.shape == (480, 640, 3)
    release.set()
    worker.join(timeout=60)
    assert len(live.analysed) == 2  # the warm frame and the slow one; the dropped one never was


def test_the_live_camera_in_chromium(tmp_path):
    """The page with a fake camera (scikit-image's astronaut as a Y4M clip): START, then the
    readout shows the face's emotion, refreshed; STOP releases the camera."""
    if not Path(os.environ.get("FER_CHROMIUM", "/usr/bin/chromium")).exists():
        if os.environ.get("FER_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium (apt-get install chromium)")
        pytest.skip("no Chromium")
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        if os.environ.get("FER_REQUIRE_BROWSER") == "1":
            pytest.fail("cannot create a network namespace (unshare -n needs root or user namespaces)")
        pytest.skip("cannot create a network namespace")
    done = subprocess.run([unshare, "-n", sys.executable, str(SCENARIO)], capture_output=True, text=True,
                          timeout=400, env={k: v for k, v in os.environ.items() if k != "FER2013_DIR"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in result, result
    assert len(result["readouts"]) >= 3, result
    faces, fps, emotion = READOUT.search(result["readouts"][-1]).groups()
    assert int(faces) == 1 and float(fps) > 0 and emotion
    assert result["exceptions"] == 0 and result["stopped"]
    assert "Traceback" not in result["log"], result["log"]
