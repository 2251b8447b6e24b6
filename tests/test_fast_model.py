"""The shipped fast model's place beside the default: ``fast`` in every command and page, and the
default of the views where speed matters (video, the live camera, Explore), with the choice shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.errors import ModelError
from fer_core.inference.loader import resolve_model, speed_model

ROOT = Path(__file__).resolve().parent.parent
PREDICT, EXPLORE = (str(ROOT / "pages" / name) for name in ("predict.py", "explore.py"))
TIMEOUT = 120


def test_without_a_shipped_fast_model_fast_says_what_to_do_and_views_keep_the_apps_model(monkeypatch, tmp_path):
    from fer_core.inference import loader

    monkeypatch.setattr(loader, "FAST_MODEL_DIR", tmp_path / "no-fast-model")
    with pytest.raises(ModelError, match="release RUN --as fast"):
        resolve_model("fast")
    assert speed_model() is None


def test_fast_resolves_in_the_cli_and_is_the_default_for_explore(fast_model, demo_app, capsys):
    from fer_core.cli import main

    ref = resolve_model("fast")
    assert ref.name == "fast" and ref.path == fast_model / "model.keras" and speed_model() == "fast"
    assert main(["evaluate", "--model", "fast", "--data", "demo:3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "fast"
    assert main(["explore", "embed", "--data", "demo:3", "--split", "Training", "--json"]) == 0  # no --model
    assert json.loads(capsys.readouterr().out)["model"] == "fast"


def test_pages_offer_fast_and_default_to_it_where_speed_matters(fast_model, demo_app):
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    assert not at.exception
    photos = at.selectbox(key="pr_model")
    assert photos.value == "default" and photos.options == ["Shipped default model (most accurate)",
                                                            "Shipped fast model (for live views)"]
    at.radio(key="pr_mode").set_value("A video").run()
    speed = at.selectbox(key="pr_model_speed")
    assert not at.exception and speed.value == "fast" and speed.options == photos.options
    assert speed.label == "Model for video and the live camera"
    speed.set_value("default").run()  # the choice is the user's, and kept apart from the photos'
    at.radio(key="pr_mode").set_value("Photos").run()
    at.radio(key="pr_mode").set_value("A video").run()
    assert at.selectbox(key="pr_model_speed").value == "default" and not at.exception
    # and the photos' choice survives a visit to the video mode too
    at.radio(key="pr_mode").set_value("Photos").run()
    at.selectbox(key="pr_model").set_value("fast").run()
    at.radio(key="pr_mode").set_value("A video").run()
    at.radio(key="pr_mode").set_value("Photos").run()
    assert at.selectbox(key="pr_model").value == "fast" and not at.exception

    ex = AppTest.from_file(EXPLORE, default_timeout=TIMEOUT).run()
    assert not ex.exception and ex.selectbox(key="ex_model").value == "fast"


def test_without_a_fast_model_video_starts_at_the_photos_choice(monkeypatch, tmp_path, demo_app, run_in_data):
    from fer_core.inference import loader

    monkeypatch.setattr(loader, "FAST_MODEL_DIR", tmp_path / "no-fast-model")
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    at.selectbox(key="pr_model").set_value(str(run_in_data)).run()
    at.radio(key="pr_mode").set_value("A video").run()
    assert not at.exception and at.selectbox(key="pr_model_speed").value == str(run_in_data)


def test_no_run_can_take_a_shipped_models_name(data_dir):
    from fer_core.errors import ConfigError
    from fer_core.runs.rundir import new_run_dir

    for name in ("fast", "default"):
        with pytest.raises(ConfigError, match="names a shipped model"):
            new_run_dir("tiny", name)
    assert new_run_dir("tiny", "fast-v2").name == "fast-v2"


def test_predict_keeps_photos_on_the_apps_model_and_sends_videos_to_fast(fast_model, demo_app, tmp_path, capsys):
    import cv2
    import numpy as np

    from fer_core.cli import main

    skimage_data = pytest.importorskip("skimage.data")
    frame = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (160, 120))
    photo, clip = tmp_path / "photo.png", tmp_path / "clip.avi"
    cv2.imwrite(str(photo), frame)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for i in range(5):
        writer.write(np.roll(frame, i, axis=1))
    writer.release()
    assert main(["predict", str(photo), str(clip), "--fps", "5", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["model"] for d in docs] == ["default", "fast"]
    assert main(["predict", str(photo), str(clip), "--fps", "5", "--model", "default", "--json"]) == 0
    assert [d["model"] for d in json.loads(capsys.readouterr().out)] == ["default", "default"]  # asked: kept


def test_runs_page_exports_the_fast_model_and_shows_how_it_learned(fast_model, demo_app, run_in_data, trained_run):
    from fer_core.runs.model_folder import write_history
    from fer_core.runs.rundir import read_metrics

    write_history(fast_model, "fast-run", read_metrics(trained_run))
    at = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("The shipped fast model" in m.value for m in at.markdown)
    charts = len(at.get("vega_lite_chart"))
    assert at.radio(key="runs_shipped").value == "default"  # the default model's history first
    at.radio(key="runs_shipped").set_value("fast").run()
    assert not at.exception and any("fast model (shipped with it in `fer_core/shipping/fast_model/history/`)" in c.value
                                    for c in at.caption)
    assert len(at.get("vega_lite_chart")) == charts  # its loss and accuracy curves in place of the default's


def test_the_study_table_has_a_row_for_the_fast_model_once_it_is_released(trained_run, monkeypatch, tmp_path):
    from fer_core.inference import loader
    from fer_core.shipping.release import release
    from fer_core.training.catalog import reference_rows

    monkeypatch.setattr(loader, "FAST_MODEL_DIR", tmp_path / "fast_model")
    assert [r["kind"] for r in reference_rows() if r["kind"] != "published"] == ["shipped model"]
    metrics = release(trained_run, "demo", target=tmp_path / "fast_model", log=lambda *a: None, shipped_as="fast")
    (row,) = [r for r in reference_rows() if r["kind"] == "shipped fast model"]
    assert row["run"].startswith("FER Studio's fast model") and row["parameters"] == metrics["params"]
    assert row["test accuracy"] == metrics["results"][f"PrivateTest/{metrics['default_tta']}"]["accuracy"]


def test_photos_and_evaluate_start_at_the_apps_model_never_at_fast_by_position(fast_model, no_default_model, demo_app,
                                                                              run_in_data, capsys):
    """Regression: without the default model, photos and Evaluate started at the first choice, the fast
    model, where the app's model (here the newest run) was meant."""
    from fer_core.cli import main

    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    assert not at.exception and at.selectbox(key="pr_model").value == str(run_in_data)
    ev = AppTest.from_file(str(ROOT / "pages" / "evaluate.py"), default_timeout=TIMEOUT).run()
    assert ev.selectbox(key="ev_model").value == str(run_in_data)
    # the card command knows the shipped models by name
    assert main(["card", "fast"]) != 0 and f"{fast_model}: no metrics.json" in capsys.readouterr().err
