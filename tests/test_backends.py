"""Other Keras backends: under JAX, in a process where TensorFlow cannot even be imported, a model
saved under TensorFlow predicts and evaluates the same; training runs (augmentation in the
training step), resumes exactly where an unbroken run would be, distils; and what it trains loads
and predicts the same under TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Everything under JAX in one child process (JAX starts once), where TensorFlow is installed (as in
#: CI) and must still never be loaded, by FER Studio or by Keras: the shipped model's answers
#: (compiled forward pass and Keras' batched predict), and training (a net with batch norm and
#: dropout, every augmentation): two epochs straight, one then a resume, a distilled student, the
#: command line's ``evaluate`` of the trained run and its answers, for the parent (TensorFlow) to
#: compare.
UNDER_JAX = """
import sys
import json
from pathlib import Path
import numpy as np, keras
from fer_core.cli import main
from fer_core.inference.forward import predict_proba
from fer_core.inference.loader import load_model, resolve_model
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.trainer import train
out = Path(sys.argv[1])
faces = np.load(out / "faces.npy")
model = load_model(resolve_model("default"))
compiled = predict_proba(model, faces, "flip")  # a few faces: the compiled forward pass
batched = predict_proba(model, faces, "flip", batch_size=4)  # more than a batch: Keras' predict
np.save(out / "default.npy", np.stack([compiled, batched]))
cfg = TrainConfig.for_model("CBPD-CBPD-FDF", data="demo:10", conv_widths=[8, 16], dense_widths=[16], dropout=0.3,
                            epochs=2, batch_size=8, optimizer="adam", learning_rate=0.003, flip=True, rotation=10,
                            zoom=0.1, translate=0.05, erase=0.5, crop=44, aug_warmup_epochs=1)
train(cfg, out / "whole")
train(TrainConfig.parse({**cfg.to_dict(), "epochs": 1}), out / "split")
train(run_dir=out / "split", resume=True, epochs=2)
train(TrainConfig.parse({**cfg.to_dict(), "epochs": 1, "teacher": str(out / "whole")}), out / "student")
print("EVALUATE-TRAINED")
assert main(["evaluate", "--model", str(out / "whole"), "--data", "demo:3", "--json"]) == 0
np.save(out / "trained.npy", predict_proba(load_model(resolve_model(str(out / "whole"))), faces, "flip"))
loaded = sys.modules.get("tensorflow") is not None or any(m.startswith("tensorflow.") for m in sys.modules)
print("BACKEND", keras.backend.backend(), "TENSORFLOW-IMPORTED", loaded)
"""


def _need_jax():
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("FER_REQUIRE_DATA") == "1":  # CI installs the optional requirements: JAX must be there
            pytest.fail("JAX is not installed (pip install -r requirements-optional.txt)")
        pytest.skip("JAX is not installed (it is in requirements-optional.txt)")


def _under_jax(script: str, *args, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "FER_DATA_DIR": str(data_dir)}  # its own caches: nothing computed under TensorFlow is reused
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def jax_child(tmp_path_factory):
    """The JAX child's folder (its runs and answers), the faces it answered for, and its output."""
    _need_jax()
    from fer_core.data.loading import load_dataset

    out = tmp_path_factory.mktemp("under-jax")
    faces = load_dataset("demo:2", use_cache=False).images[:6]
    np.save(out / "faces.npy", faces)
    done = _under_jax(UNDER_JAX, out, data_dir=out / "jax-data")
    return out, faces, done.stdout


def _json_between(stdout: str, start: str, end: str) -> dict:
    import json

    return json.loads(stdout[stdout.index(start) + len(start):stdout.index(end)])


def test_jax_ran_everything_without_importing_tensorflow(jax_child):
    assert jax_child[2].strip().endswith("BACKEND jax TENSORFLOW-IMPORTED False")


def test_the_shipped_model_predicts_the_same_under_jax_without_tensorflow(jax_child):
    from fer_core.inference.forward import predict_proba
    from fer_core.inference.loader import load_model, resolve_model

    out, faces, _ = jax_child
    under_jax = np.load(out / "default.npy")
    under_tf = predict_proba(load_model(resolve_model("default")), faces, "flip")
    np.testing.assert_allclose(under_jax[0], under_tf, atol=1e-4)
    np.testing.assert_allclose(under_jax[1], under_tf, atol=1e-4)
    assert (under_jax[0].argmax(1) == under_tf.argmax(1)).all()


def test_evaluate_runs_under_jax_without_tensorflow_and_agrees(jax_child, capsys):
    from fer_core.cli import main

    out, _, stdout = jax_child
    under_jax = _json_between(stdout, "EVALUATE-TRAINED", "BACKEND")  # the JAX-trained run, evaluated under JAX
    assert main(["evaluate", "--model", str(out / "whole"), "--data", "demo:3", "--json"]) == 0
    under_tf = json.loads(capsys.readouterr().out)
    assert under_jax["num_images"] == under_tf["num_images"] > 0
    assert under_jax["accuracy"] == under_tf["accuracy"] and under_jax["confusion_matrix"] == under_tf["confusion_matrix"]


def test_training_under_jax_resumes_exactly_distils_and_loads_under_tensorflow(jax_child):
    from fer_core.inference.forward import predict_proba
    from fer_core.inference.loader import load_model, resolve_model
    from fer_core.runs import rundir

    out, faces, stdout = jax_child
    whole, split, student = (out / name for name in ("whole", "split", "student"))
    for run in (whole, split, student):
        assert rundir.read_config(run).backend == "jax" and rundir.read_info(run)["backend"] == "jax"
        assert rundir.read_info(run)["status"] == "finished"
    assert json.loads((whole / "versions.json").read_text())["backend"] == "jax"
    # stopped after epoch 1 and resumed: the same batches, augmentation, dropout and weights as unbroken
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[r[k] for k in keys] for r in rundir.read_metrics(split)] == \
        [[r[k] for k in keys] for r in rundir.read_metrics(whole)]
    for a, b in zip(load_model(resolve_model(str(whole))).get_weights(), load_model(resolve_model(str(split))).get_weights()):
        np.testing.assert_array_equal(a, b)
    # the distilled student learned from the teacher's answers
    assert rundir.read_config(student).teacher == str(whole) and np.isfinite(rundir.read_metrics(student)[0]["loss"])
    # what JAX trained, TensorFlow loads and answers the same
    under_tf = predict_proba(load_model(resolve_model(str(whole))), faces, "flip")
    np.testing.assert_allclose(np.load(out / "trained.npy"), under_tf, atol=1e-4)


def test_a_run_refuses_another_backend_than_it_was_started_under(tmp_path):
    _need_jax()  # installed, so the config is valid; this process runs TensorFlow
    from fer_core.errors import ConfigError
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    cfg = TrainConfig.for_model("tiny", data="demo:10", epochs=1, backend="jax")
    with pytest.raises(ConfigError, match="KERAS_BACKEND=jax") as caught:
        train(cfg, tmp_path / "run")
    assert caught.value.field == "backend"


def test_mixed_precision_is_set_on_any_backend_with_a_gpu(monkeypatch):
    import keras

    from fer_core import device

    monkeypatch.setattr(device, "accelerators", lambda: 1)  # as a GPU machine answers, whatever the backend
    before = keras.mixed_precision.global_policy().name
    try:
        device.setup_accelerators()
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy(before)
    monkeypatch.setattr(device, "accelerators", lambda: 0)
    device.setup_accelerators()
    assert keras.mixed_precision.global_policy().name == before  # CPUs: unchanged


def test_tensorflow_only_features_say_so_under_another_backend(monkeypatch):
    from fer_core.inference import explain
    from fer_core.shipping import export

    faces = np.zeros((2, 48, 48), np.uint8)
    monkeypatch.setattr(explain, "configured_backend", lambda: "jax")
    maps = explain.gradcam(object(), faces, np.zeros(2, int))  # never reaches the model
    assert [m for m, _ in maps] == [None, None] and "Grad-CAM needs TensorFlow" in maps[0][1]
    assert "KERAS_BACKEND=jax" in maps[0][1]
    monkeypatch.setattr(export, "configured_backend", lambda: "jax")
    assert "needs TensorFlow as Keras' backend" in export.missing_runtime("onnx")


def test_runs_match_their_recipe_whatever_backend_they_trained_under():
    from fer_core.runs.recipes import find_recipe, get_recipe
    from fer_core.runs.trainconfig import TrainConfig

    cfg = get_recipe("fast-v1").train_config("demo").to_dict()
    for backend in ("", "tensorflow", "jax"):
        assert find_recipe(TrainConfig.parse({**cfg, "backend": backend})).name == "fast-v1"


def test_a_run_is_resumed_under_its_own_backend_and_refused_before_anything_changes(tmp_path):
    import argparse

    from fer_core.cli.training import wanted_backend
    from fer_core.errors import ConfigError
    from fer_core.runs import rundir
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    run = tmp_path / "jax-run"
    run.mkdir()
    rundir.write_config(run, TrainConfig.for_model("tiny", data="demo:10", epochs=2, backend="jax"))
    # a job's worker and train --resume take the run's backend, whatever is asked or set
    assert wanted_backend(argparse.Namespace(run_dir=str(run), backend=None)) == "jax"
    assert wanted_backend(argparse.Namespace(resume=str(run), backend="tensorflow")) == "jax"
    assert wanted_backend(argparse.Namespace(resume=None, backend="jax")) == "jax"
    assert wanted_backend(argparse.Namespace(resume=None, backend=None)) is None
    before = (run / "config.json").read_text()
    with pytest.raises(ConfigError, match="KERAS_BACKEND=jax"):  # this process runs TensorFlow
        train(run_dir=run, resume=True, epochs=5)
    assert (run / "config.json").read_text() == before and "extended" not in rundir.read_info(run)


def test_each_epoch_draws_its_own_augmentation():
    import keras

    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.augment import reseed, training_model

    cfg = TrainConfig.for_model("CBPD-F", conv_widths=[4], dropout=0.5, flip=True, rotation=10, erase=0.5)
    net = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Dropout(0.5)])
    _, augment = training_model(net, cfg)
    draws = {}
    for epoch in (0, 1, 0):
        augment.start_epoch(epoch, 1.0)
        reseed(net, cfg.seed, epoch)
        draws.setdefault(epoch, []).append(np.concatenate([
            keras.ops.convert_to_numpy(keras.random.uniform((50,), seed=augment.seed_generator)),
            keras.ops.convert_to_numpy(keras.random.uniform((50,), seed=net.layers[0].seed_generator))]))
    np.testing.assert_array_equal(draws[0][0], draws[0][1])  # an epoch restarts its own stream
    assert not np.isin(draws[1][0], draws[0][0]).any()  # and shares no draw with the next epoch's
