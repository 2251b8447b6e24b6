"""Other Keras backends: a model saved under TensorFlow predicts and evaluates the same under JAX,
in a process where TensorFlow cannot even be imported."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Run in a child process: the backend is chosen once per process, and TensorFlow is made
#: unimportable there, so anything that still reached for it fails loudly.
NO_TENSORFLOW = """
import sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow must not be imported under another backend")
sys.meta_path.insert(0, NoTensorFlow())
"""
PREDICT = NO_TENSORFLOW + """
import numpy as np, keras
from fer_core.inference.forward import predict_proba
from fer_core.inference.loader import load_model, resolve_model
faces = np.load(sys.argv[1])
model = load_model(resolve_model("default"))
compiled = predict_proba(model, faces, "flip")  # a few faces: the compiled forward pass
batched = predict_proba(model, faces, "flip", batch_size=4)  # more than a batch: Keras' predict
np.save(sys.argv[2], np.stack([compiled, batched]))
print(keras.backend.backend(), "tensorflow" in sys.modules)
"""


#: The command line's ``evaluate``, run the same way.
EVALUATE = NO_TENSORFLOW + """
from fer_core.cli import main
code = main(["evaluate", "--model", "default", "--data", "demo:3", "--json"])
print("tensorflow imported:", "tensorflow" in sys.modules, "exit", code)
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


def test_the_shipped_model_predicts_the_same_under_jax_without_tensorflow(tmp_path):
    _need_jax()
    from fer_core.data.loading import load_dataset
    from fer_core.inference.forward import predict_proba
    from fer_core.inference.loader import load_model, resolve_model

    faces = load_dataset("demo:2", use_cache=False).images[:6]
    np.save(tmp_path / "faces.npy", faces)
    done = _under_jax(PREDICT, tmp_path / "faces.npy", tmp_path / "jax.npy", data_dir=tmp_path / "jax-data")
    assert done.stdout.split()[-2:] == ["jax", "False"]  # JAX ran it, and TensorFlow was never imported
    under_jax = np.load(tmp_path / "jax.npy")
    under_tf = predict_proba(load_model(resolve_model("default")), faces, "flip")
    np.testing.assert_allclose(under_jax[0], under_tf, atol=1e-4)
    np.testing.assert_allclose(under_jax[1], under_tf, atol=1e-4)
    assert (under_jax[0].argmax(1) == under_tf.argmax(1)).all()


def test_evaluate_runs_under_jax_without_tensorflow_and_agrees(tmp_path, capsys):
    _need_jax()
    import json

    from fer_core.cli import main

    done = _under_jax(EVALUATE, data_dir=tmp_path / "jax-data")
    assert done.stdout.strip().endswith("tensorflow imported: False exit 0")
    under_jax = json.loads(done.stdout[:done.stdout.rindex("tensorflow imported:")])
    assert main(["evaluate", "--model", "default", "--data", "demo:3", "--json"]) == 0
    under_tf = json.loads(capsys.readouterr().out)
    assert under_jax["num_images"] == under_tf["num_images"] > 0
    assert under_jax["accuracy"] == under_tf["accuracy"] and under_jax["confusion_matrix"] == under_tf["confusion_matrix"]
