"""The lecturer's ninety minutes: real progress on long waits, "Prepare for class", presentation mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.data.loading import load_dataset
from fer_core.inference.engine import load_engine
from fer_core.inference.evaluate import evaluate
from fer_core.inference.explore import embed, embed_cached
from fer_core.inference.loader import resolve_model

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


@pytest.fixture(scope="module")
def fast():
    ref = resolve_model("fast")
    return ref, load_engine(ref)


def test_evaluation_and_the_map_report_their_batches_and_give_the_same_answers(fast):
    ref, model = fast
    ds = load_dataset("demo:60")  # 42 PrivateTest faces, flipped: 84 rows, one chunk
    big = load_dataset("demo:300")  # 210 PrivateTest faces: 420 rows, four chunks
    for data in (ds, big):
        seen = []
        with_bar = evaluate(model, data, "PrivateTest", "flip", progress=lambda d, t: seen.append((d, t)))
        plain = evaluate(model, data, "PrivateTest", "flip")
        n = int((data.splits == "PrivateTest").sum())
        assert np.array_equal(with_bar.proba, plain.proba)
        assert seen[-1] == (n, n) and all(t == n for _, t in seen)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # it only goes forward
    assert len(seen) > 1  # the larger split reports more than once
    part = big.subset("PublicTest")
    seen = []
    emb = embed(model, part.images, part.labels, "PublicTest", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(part), len(part)) and np.array_equal(emb.pred, embed(model, part.images, part.labels,
                                                                                  "PublicTest").pred)


def test_the_map_is_cached_on_disk_and_a_read_only_server_writes_none(fast, data_dir, monkeypatch):
    ref, model = fast
    ds = load_dataset("demo:60")
    loads = []
    first, cached = embed_cached(ref, ds, "PublicTest", "pca", None, load=lambda r: loads.append(r) or model)
    assert not cached and len(loads) == 1
    again, cached = embed_cached(ref, ds, "PublicTest", "pca", None, load=lambda r: loads.append(r) or model)
    assert cached and len(loads) == 1  # read from disk: no model loaded
    for name in ("index", "xy", "true", "pred", "confidence", "near"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert (first.knn_full, first.knn_2d, first.method) == (again.knn_full, again.knn_2d, again.method)
    monkeypatch.setenv("FER_READ_ONLY", "1")
    before = sorted(p.name for p in data_dir.rglob("*"))
    _, cached = embed_cached(ref, ds, "PublicTest", "tsne", None, load=lambda r: model)
    assert not cached and sorted(p.name for p in data_dir.rglob("*")) == before


def test_prepare_for_class_fills_the_caches_the_pages_read(demo_app, capsys, monkeypatch):
    from fer_core.cli import main
    from fer_core.inference.evaluate import evaluate_cached
    from fer_core.shipping import warmup

    assert main(["warmup", "--data", "demo:40", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["steps"]
    titles = [s["step"] for s in first]
    assert any("evaluation of the default model on PrivateTest" in t for t in titles)
    assert any("Explore map of the fast model on PublicTest (pca" in t for t in titles)
    assert not any(s["cached"] for s in first)
    assert main(["warmup", "--data", "demo:40", "--json"]) == 0
    assert all(s["cached"] for s in json.loads(capsys.readouterr().out)["steps"])  # the second time: all there
    # what the pages ask for is what was prepared: no model is loaded
    ds = load_dataset("demo:40")
    ref = resolve_model("default")
    _, cached = evaluate_cached(ref, ds, "PrivateTest", "flip", load=lambda r: pytest.fail("loaded a model"))
    assert cached
    fast_ref = resolve_model("fast")
    _, cached = embed_cached(fast_ref, ds, "PublicTest", "pca", warmup.MAP_SAMPLE,
                             load=lambda r: pytest.fail("loaded a model"))
    assert cached


def test_the_home_page_prepares_for_class(demo_app, monkeypatch):
    import ui
    from fer_core.shipping import warmup

    monkeypatch.setattr(ui, "plan", lambda: [warmup.Step("evaluation", "fast", "PrivateTest")])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.button(key="home_prepare").click().run()
    assert not at.exception and not at.error
    assert at.success[-1].value == "Ready: 1 steps, 1 computed now."
    assert "evaluation of the fast model on PrivateTest" in at.caption[-1].value
    monkeypatch.setenv("FER_READ_ONLY", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not [b for b in at.button if b.key == "home_prepare"]  # the students' server prepares nothing


def test_presentation_mode_enlarges_chart_axes_legends_and_matrix_cells(demo_app):
    """In presentation mode every chart of a page carries the larger sizes (Vega draws chart text,
    which page CSS cannot reach; tests/test_lecture_browser.py measures the page's own text)."""
    import ui

    def configs(at: AppTest) -> list[dict]:
        return [json.loads(c.proto.spec).get("config", {}) for c in at.get("vega_lite_chart")]

    page = str(ROOT / "pages" / "evaluate.py")
    plain = AppTest.from_file(page, default_timeout=TIMEOUT).run()
    assert configs(plain) and not any(c.get("axis", {}).get("labelFontSize") for c in configs(plain))
    at = AppTest.from_file(page, default_timeout=TIMEOUT)
    at.session_state["present"] = True
    at.run()
    assert not at.exception
    found = configs(at)
    assert len(found) == len(configs(plain))
    for config in found:  # the confusion matrix and the per-class bars
        assert config["axis"]["labelFontSize"] == ui.PRESENT_CHART["axis"]
        assert config["legend"]["labelFontSize"] == ui.PRESENT_CHART["legend"]
        assert config["text"]["fontSize"] == ui.PRESENT_CHART["text"]
    assert at.toggle(key="ui_present_switch").value is True  # the switch shows the session's mode


def test_labels_follow_the_picture_and_grow_in_presentation_mode(fast):
    """Regression: a label was 16 px high whatever the photo (tiny on a 1200-px photo shown at the
    width of a page); presentation mode draws labels larger still, on photos and video frames."""
    import io

    from PIL import Image
    from skimage import data as skimage_data

    from fer_core.inference.annotated import annotate
    from fer_core.inference.drawing import MIN_FONT_SCALE, label_scale
    from fer_core.inference.photo import analyse, draw
    from fer_core.inference.video import VideoFace, VideoFrame

    assert label_scale(400, 300) == MIN_FONT_SCALE
    assert label_scale(2000, 1000) > label_scale(1000, 500) > MIN_FONT_SCALE
    assert label_scale(1000, 500, larger=True) > label_scale(1000, 500)
    ref, model = fast
    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, "PNG")
    (res,) = analyse([("astronaut.png", buf.getvalue())], model, ref.classes, explain=False)
    assert res.faces
    yellow = lambda img: int((np.asarray(img)[..., :3] == (255, 215, 0)).all(-1).sum())  # noqa: E731  the tab's fill
    assert yellow(draw(res, larger=True)) > yellow(draw(res)) > 0
    frame = np.zeros((720, 1280, 3), np.uint8)
    vf = VideoFrame(0.0, [VideoFace(res.faces[0].box, 1, proba=res.faces[0].proba, label=res.faces[0].label)])
    drawn = [np.count_nonzero(annotate(frame, vf, larger=big).any(-1)) for big in (False, True)]
    assert drawn[1] > drawn[0] > 0
