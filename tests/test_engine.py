"""The inference engine: every forward pass of the app on LiteRT, the same answers as Keras, safe
from many threads, and Keras (with the reason said) whenever an artifact cannot be trusted."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.data.demo import make_demo_dataset
from fer_core.inference import engine as eng
from fer_core.inference.engine import ARTIFACT, META, load_engine
from fer_core.inference.explore import features
from fer_core.inference.forward import predict_proba
from fer_core.inference.loader import load_model, resolve_model


@pytest.fixture(scope="module")
def faces():
    return make_demo_dataset(per_class=20, seed=5).images


@pytest.fixture
def fresh(monkeypatch):
    """No artifact compiled earlier in this process is remembered."""
    monkeypatch.setattr(eng, "_COMPILED", eng.OrderedDict())


def test_the_shipped_models_run_their_artifact_without_loading_keras():
    for name in ("default", "fast"):
        ref = resolve_model(name)
        engine = load_engine(ref)
        assert engine.artifact is not None and engine.runtime.startswith("LiteRT"), name
        assert engine._keras is None, f"{name}: Keras was loaded to predict"  # the 7-s load the engine avoids
        meta = json.loads((ref.path.parent / META).read_text())
        assert meta["source"] == eng.file_id(ref.path) and meta["parity"]["split"] == "PublicTest"
        # chosen by the rule: at most MAX_DROP below Keras on PublicTest
        assert meta["parity"]["engine"] >= meta["parity"]["keras"] - eng.MAX_DROP


@pytest.mark.real_data
def test_the_default_engine_agrees_with_keras_on_real_faces(real_data_dir):
    from fer_core.data.loading import load_dataset

    part = load_dataset(str(real_data_dir)).subset("PrivateTest")
    x = part.images[::24]  # 150 faces
    engine = load_engine(resolve_model("default"))
    a, b = predict_proba(engine, x, "flip"), predict_proba(engine.keras, x, "flip")
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98
    assert np.abs(a - b).max() < 0.1
    # its features are Keras' features (the Explore map's input), up to 8-bit rounding
    from fer_core.inference.explore import features as keras_features

    fa, fb = features(engine, x[:30]), keras_features(engine.keras, x[:30])
    assert fa.shape == fb.shape
    cos = (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1))
    assert cos.min() > 0.95


def test_a_run_is_compiled_on_first_use_cached_and_never_compiled_again(run_in_data, faces, fresh, monkeypatch):
    ref = resolve_model(run_in_data.name)
    first = load_engine(ref)
    assert first.artifact is not None and first.meta["parity"]["agreement"] >= eng.MIN_AGREEMENT
    cached = eng.cache_folder(eng.file_id(ref.path))
    assert (cached / ARTIFACT).is_file() and (cached / META).is_file()
    assert not (run_in_data / ARTIFACT).exists(), "the engine wrote into a run (only its worker may)"
    np.testing.assert_allclose(predict_proba(first, faces), predict_proba(load_model(ref), faces), atol=0.05)

    monkeypatch.setattr(eng, "_COMPILED", eng.OrderedDict())  # as a new process: only the cache file is left

    def no_compiling(*a, **k):
        raise AssertionError("compiled again although the cache holds the artifact")

    monkeypatch.setattr(eng, "convert", no_compiling)
    again = load_engine(ref)
    assert again.artifact == first.artifact and again._keras is None


def test_an_artifact_of_another_model_or_a_damaged_one_is_never_run(run_in_data, tmp_path, fresh):
    ref = resolve_model(run_in_data.name)
    engine = load_engine(ref)
    folder = eng.cache_folder(eng.file_id(ref.path))
    # damaged: its bytes no longer match engine.json's hash
    (folder / ARTIFACT).write_bytes((folder / ARTIFACT).read_bytes()[:1000])
    assert eng.read_artifact(folder, eng.file_id(ref.path)) is None
    # another model's: a copy of the default's artifact beside this run's model
    other = tmp_path / "other"
    shutil.copytree(run_in_data, other)
    default = resolve_model("default").path.parent
    for name in (ARTIFACT, META):
        shutil.copy(default / name, other / name)
    assert eng.read_artifact(other, eng.file_id(other / "model.keras")) is None
    eng._COMPILED.clear()
    rebuilt = load_engine(resolve_model(str(other)))
    assert rebuilt.artifact is not None and rebuilt.artifact != (default / ARTIFACT).read_bytes()
    assert len(rebuilt.ref.classes) == len(engine.ref.classes)


def test_keras_runs_the_model_and_says_why_when_no_artifact_can_be_trusted(run_in_data, faces, fresh, monkeypatch):
    ref = resolve_model(run_in_data.name)
    monkeypatch.setattr(eng, "MIN_AGREEMENT", 1.01)  # no artifact can pass
    failed = load_engine(ref)
    assert failed.artifact is None and failed.runtime == "Keras"
    assert "no LiteRT artifact passed its check" in failed.note
    np.testing.assert_allclose(predict_proba(failed, faces), predict_proba(load_model(ref), faces), atol=1e-5)

    monkeypatch.setattr(eng, "runtime_missing", lambda: "LiteRT (ai-edge-litert) is not installed")
    missing = load_engine(resolve_model("default"))
    assert missing.artifact is None and "not installed" in missing.note
    assert predict_proba(missing, faces[:4]).shape == (4, 7)


def test_many_threads_share_a_bounded_pool_and_get_what_each_gets_alone(faces, monkeypatch):
    monkeypatch.setenv(eng.POOL_SIZE_VAR, "2")
    engine = load_engine(resolve_model("default"))
    engine._pool = eng.Pool(engine._interpreter, eng.pool_size())  # this test's own pool of two
    batches = [faces[i * 10:(i + 1) * 10 + i] for i in range(8)]  # eight sizes: interpreters resize per call
    alone = [predict_proba(engine, b, "flip") for b in batches]
    got, start = {}, threading.Barrier(8)

    def session(i: int) -> None:
        start.wait()
        for _ in range(3):
            got.setdefault(i, []).append(predict_proba(engine, batches[i], "flip"))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(got) == list(range(8))
    for i in range(8):
        for p in got[i]:
            np.testing.assert_allclose(p, alone[i], atol=1e-6)
    assert engine._pool.made <= 2


def test_benchmark_prints_every_model_by_runtime(run_in_data, demo_app, capsys, fresh):
    assert main(["benchmark", "--model", run_in_data.name, "--data", "demo:20", "--split", "PublicTest",
                 "--rounds", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["runtime"]) for r in doc["models"]] == [(run_in_data.name, "LiteRT 8-bit (dynamic range)"),
                                                                     (run_in_data.name, "Keras")]
    for row in doc["models"]:
        assert set(row) == {"model", "runtime", "accuracy", "accuracy_flip", "faces_per_s", "ms_per_face", "size_mb",
                            "params"}
        assert 0 <= row["accuracy"] <= 1 and row["faces_per_s"] > 0 and row["ms_per_face"] > 0
    lite, keras_row = doc["models"]
    assert lite["params"] == keras_row["params"] and abs(lite["accuracy"] - keras_row["accuracy"]) <= 0.05
    assert doc["machine"] and doc["split"] == "PublicTest"
    assert main(["benchmark", "--model", run_in_data.name, "--data", "demo:20", "--rounds", "0"]) == 2


def test_a_shipped_model_whose_release_kept_no_artifact_runs_keras(run_in_data, tmp_path, fresh, monkeypatch):
    """compile_shipped found no artifact close enough to Keras: the folder records it, a stale
    artifact is gone, and the engine never compiles one on first use for that file."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for name in ("model.keras", "config.json", "classes.json"):
        shutil.copy(run_in_data / name, folder / name)
    (folder / ARTIFACT).write_bytes(b"an earlier release's artifact")
    eng.write_keras_choice(folder, eng.file_id(folder / "model.keras"), "at release no LiteRT artifact came close")
    assert not (folder / ARTIFACT).exists()

    def no_compiling(*a, **k):
        raise AssertionError("compiled although the release chose Keras")

    monkeypatch.setattr(eng, "convert", no_compiling)
    engine = load_engine(resolve_model(str(folder)))
    assert engine.artifact is None and engine.runtime == "Keras" and "at release" in engine.note
