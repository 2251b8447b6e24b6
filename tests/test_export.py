"""Exports: each format, loaded in its own runtime, is the same model as the ``.keras`` file."""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.data.images import read_face
from fer_core.errors import ModelError
from fer_core.inference.loader import load_model, resolve_model
from fer_core.shipping import export


@pytest.fixture(scope="module")
def faces(real_data_dir) -> np.ndarray:
    """256 real FER2013 test faces, some of every class."""
    folders = sorted(p for p in (real_data_dir / "test").iterdir() if p.is_dir())
    paths = [p for folder in folders for p in sorted(folder.iterdir())[:37]][:256]
    assert len(paths) == 256
    return np.stack([read_face(p) for p in paths])[..., None]


@pytest.fixture(scope="module")
def small(trained_run):
    """A small trained run (the session's tiny model) and the model, loaded once: what a format
    does to a network does not depend on its size, and exporting it takes a fraction of the time."""
    ref = resolve_model(str(trained_run))
    return ref, load_model(ref)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, trained_run):
    """Every float export of the small run, written once for the module."""
    root = tmp_path_factory.mktemp("exports")
    return {fmt: export.export_model(str(trained_run), fmt, root / fmt) for fmt in export.FORMATS}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_float_export_matches_keras(fmt, exports, small, faces):
    ref, model = small
    result = exports[fmt]
    assert result.graph.exists() and result.size_bytes > 4 * model.count_params() * 0.9  # float32 weights
    loaded = export.ExportedModel(result.folder)
    assert loaded.classes == ref.classes
    expected = model.predict(faces.astype("float32"), verbose=0)
    got = loaded.predict(faces)
    assert got.shape == (256, len(ref.classes))
    assert np.abs(got - expected).max() <= 1e-4
    assert loaded.predict(faces[:1]).shape == (1, len(ref.classes))  # any batch size, after a larger one


def test_export_folder_says_what_it_takes(exports, small):
    meta = export.read_meta(exports["onnx"].folder)
    assert meta["input"] == {"name": "faces", "dtype": "uint8", "shape": [None, 48, 48, 1],
                             "meaning": meta["input"]["meaning"]}
    assert meta["output"]["name"] == "probabilities" and meta["classes"] == list(small[0].classes)
    import onnx

    graph = onnx.load(str(exports["onnx"].graph))
    assert [i.name for i in graph.graph.input] == ["faces"]
    assert [o.name for o in graph.graph.output] == ["probabilities"]
    assert json.loads({p.key: p.value for p in graph.metadata_props}["classes"]) == list(small[0].classes)


def test_readme_onnx_example_runs_as_written(exports, real_data_dir, tmp_path):
    """README's five lines, run in a fresh interpreter beside an export named as they name it."""
    import re
    import shutil
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (code,) = re.findall(r"```python\n(import json, numpy.*?)```", readme, re.S)
    assert len(code.strip().splitlines()) == 5
    shutil.copytree(exports["onnx"].folder, tmp_path / "fer-onnx")
    shutil.copy(sorted((real_data_dir / "test" / "happy").iterdir())[0], tmp_path / "face.png")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    probs = ast.literal_eval(out.stdout.strip())
    assert list(probs) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert sum(probs.values()) == pytest.approx(1, abs=0.01)


def test_onnx_runs_with_onnxruntime_alone(exports, faces):
    """The README's example: onnxruntime and numpy, nothing of FER Studio."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(exports["onnx"].graph), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"faces": faces[:8]})[0]
    assert probs.shape == (8, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_quantized_export_of_the_shipped_model_is_smaller_and_agrees(shipped, faces, tmp_path):
    """The shipped ensemble in 8 bits (ONNX, dynamic): under 60% of its float32 weights, the same
    answer on nearly every real face."""
    result = export.export_model("default", "onnx", tmp_path / "q", "dynamic")
    assert result.size_bytes < 0.6 * 4 * shipped[1].count_params()
    expected = shipped[1].predict(faces.astype("float32"), verbose=0)
    got = export.ExportedModel(result.folder).predict(faces)
    assert np.allclose(got.sum(1), 1, atol=1e-3)
    # the same answer on nearly every face; accuracy itself is measured by benchmarks/bench_export.py
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.15


@pytest.mark.parametrize("fmt,quantize", [("onnx", "dynamic"), ("tflite", "float16"), ("tflite", "dynamic"),
                                          ("onnx", "float16")])
def test_quantizations_of_a_small_run(fmt, quantize, run_in_data, tmp_path):
    plain = export.export_model(run_in_data.name, fmt, tmp_path / "plain")
    small = export.export_model(run_in_data.name, fmt, tmp_path / "small", quantize)
    assert small.size_bytes < 0.75 * plain.size_bytes
    x = np.random.default_rng(2).integers(0, 256, (32, 48, 48, 1), dtype=np.uint8)
    expected = export.ExportedModel(plain.folder).predict(x)
    assert np.abs(export.ExportedModel(small.folder).predict(x) - expected).max() < 0.05


def test_export_of_a_run_and_the_zip(run_in_data, tmp_path):
    name, data = export.export_zip(run_in_data.name, "tflite")
    assert name == f"{run_in_data.name}-tflite.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    assert names == {f"{run_in_data.name}-tflite/{f}" for f in ("model.tflite", "classes.json", "export.json")}
    loaded = export.ExportedModel(tmp_path / f"{run_in_data.name}-tflite")
    model = load_model(resolve_model(str(run_in_data)))
    x = np.random.default_rng(0).integers(0, 256, (16, 48, 48, 1), dtype=np.uint8)
    assert np.abs(loaded.predict(x) - model.predict(x.astype("float32"), verbose=0)).max() <= 1e-4


def test_a_graph_saved_in_training_mode_exports_in_inference_mode(tmp_path):
    """Regression: a saved graph whose layer call says training=True (the fine-tuned v1 network's
    centre crop does) exported with batch norm in training mode, 0.46 off, by ``model.export``."""
    import keras

    from fer_core.runs import rundir

    x = keras.Input((48, 48, 1))
    h = keras.layers.Rescaling(1 / 255)(x)
    h = keras.layers.BatchNormalization()(h, training=True)
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(x, out)
    bn = model.layers[2]
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 0.3, "float32"))
    path = rundir.save_model(model, tmp_path / "flagged.keras")
    faces = np.random.default_rng(1).integers(0, 256, (32, 48, 48, 1), dtype=np.uint8)
    expected = load_model(resolve_model(str(path))).predict(faces.astype("float32"), verbose=0)
    result = export.export_model(str(path), "saved_model", tmp_path / "sm")
    assert np.abs(export.ExportedModel(result.folder).predict(faces) - expected).max() <= 1e-5


def test_bad_options_and_folders_are_refused(tmp_path, capsys):
    with pytest.raises(ModelError, match="float32 only"):
        export.check_options("saved_model", "dynamic")
    with pytest.raises(ModelError, match="not an export format"):
        export.check_options("tfjs")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["export", "default", "--format", "tflite", "--out", str(taken)]) == 2
    assert "holds notes.txt" in capsys.readouterr().err
    assert (taken / "notes.txt").read_text() == "mine"  # nothing of the user's is touched
    with pytest.raises(ModelError, match="not a FER Studio export"):
        export.ExportedModel(taken)


def test_cli_export_replaces_an_earlier_export(run_in_data, tmp_path, capsys):
    out = tmp_path / "tiny-tflite"
    for _ in range(2):
        assert main(["export", run_in_data.name, "--format", "tflite", "--quantize", "dynamic", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: model.tflite" in printed and "'probabilities'" in printed
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "export.json", "model.tflite"]
    assert export.read_meta(out)["quantize"] == "dynamic"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch folder left


def test_export_never_deletes_a_folder_that_only_looks_like_an_export(tmp_path, capsys):
    """Regression: any folder holding an export.json was removed whole, with the user's files."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "export.json").write_text("{}")
    (home / "thesis.tex").write_text("precious")
    assert main(["export", "default", "--format", "tflite", "--out", str(home)]) == 2
    err = capsys.readouterr().err
    assert "thesis.tex" in err and "never deletes your files" in err
    assert (home / "thesis.tex").read_text() == "precious" and (home / "photos").is_dir()
    assert (home / "export.json").read_text() == "{}"
    only_meta = tmp_path / "only-meta"  # an export.json that FER Studio did not write
    only_meta.mkdir()
    (only_meta / "export.json").write_text("{}")
    with pytest.raises(ModelError, match="not a FER Studio export"):
        export.check_out(only_meta)
    assert (only_meta / "export.json").exists()


def test_replacing_an_export_removes_only_its_own_files(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old graph")
    (out / "classes.json").write_text("[]")
    (out / "export.json").write_text(json.dumps({"fer_studio": "0", "format": "onnx"}))
    assert export.check_out(out) is True
    export.remove_export(out)
    assert not out.exists()
    out.mkdir()
    (out / "export.json").write_text(json.dumps({"fer_studio": "0"}))
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ModelError, match="holds mine.txt"):
        export.check_out(out)


def test_a_users_file_inside_a_saved_model_export_is_never_deleted(tmp_path, capsys):
    """Regression: `export --out` over a SavedModel export deleted the user's saved_model/assets/labels.txt."""
    out = tmp_path / "exp"
    (out / "saved_model" / "assets").mkdir(parents=True)
    (out / "saved_model" / "saved_model.pb").write_bytes(b"old graph")
    (out / "saved_model" / "assets" / "labels.txt").write_text("the user's labels")
    (out / "classes.json").write_text("[]")
    (out / "export.json").write_text(json.dumps({"fer_studio": "0", "format": "saved_model"}))
    with pytest.raises(ModelError, match="saved_model/assets/labels.txt"):
        export.check_out(out)
    assert main(["export", "default", "--format", "saved_model", "--out", str(out)]) == 2
    assert "never deletes your files" in capsys.readouterr().err
    assert (out / "saved_model" / "assets" / "labels.txt").read_text() == "the user's labels"


def test_export_into_the_current_empty_folder(run_in_data, tmp_path, monkeypatch, capsys):
    """Regression: `export --out .` printed a traceback after the work (removing the empty folder "." failed)."""
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    assert main(["export", run_in_data.name, "--format", "tflite", "--out", "."]) == 0
    assert main(["export", run_in_data.name, "--format", "tflite", "--out", "."]) == 0  # again: replaced in place
    assert sorted(p.name for p in Path(".").iterdir()) == ["classes.json", "export.json", "model.tflite"]
    assert here.stat().st_ino == inode  # the same folder: never removed under the user's shell
