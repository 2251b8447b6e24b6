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
                                                            "Shipped fast model (distilled, for live views)"]
    at.radio(key="pr_mode").set_value("A video").run()
    speed = at.selectbox(key="pr_model_speed")
    assert not at.exception and speed.value == "fast" and speed.options == photos.options
    assert speed.label == "Model for video and the live camera"
    speed.set_value("default").run()  # the choice is the user's, and kept apart from the photos'
    at.radio(key="pr_mode").set_value("Photos").run()
    at.radio(key="pr_mode").set_value("A video").run()
    assert at.selectbox(key="pr_model_speed").value == "default" and not at.exception

    ex = AppTest.from_file(EXPLORE, default_timeout=TIMEOUT).run()
    assert not ex.exception and ex.selectbox(key="ex_model").value == "fast"
