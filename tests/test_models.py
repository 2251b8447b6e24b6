"""The architecture registry and the layer notation."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import ConfigError, ModelError
from fer_core.models.build import count_params, create_model, list_models, model_names
from fer_core.models.notation import parse_notation

#: The study's parameter counts (48x48x1 input, 7 classes, unpadded 3x3 convolutions).
STUDY_PARAMS = {"study-b": 5_386_471, "study-e": 5_386_471, "study-f": 5_386_471,
                "study-c": 5_386_499, "study-d": 5_386_499, "study-g": 361_895, "study-h": 397_287}


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_builds_and_predicts(name):
    model = create_model(name, num_classes=7)
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 1)).astype("uint8")
    probs = np.asarray(model(faces, training=False))
    assert probs.shape == (2, 7)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4) and (probs >= 0).all()


@pytest.mark.parametrize("name,params", sorted(STUDY_PARAMS.items()))
def test_study_presets_reproduce_parameter_counts(name, params):
    assert count_params(name) == params


def test_notation_with_widths_matches_preset():
    model = create_model("CBCBPD-CBCBPD-FBDF", conv_widths=(32, 64), dense_widths=(1024,))
    assert model.count_params() == STUDY_PARAMS["study-b"]
    six = create_model("CCP-CCP-FF", num_classes=6, conv_widths=(32, 64), dense_widths=64)
    assert six.output_shape == (None, 6)


def test_list_models_has_descriptions_and_params():
    models = {m["name"]: m for m in list_models()}
    for name in ("pk-vgg", "study-a", "study-h", "reduced-vgg16", "resnet18", "mobilenetv2",
                 "mini-xception", "fer-vgg"):
        assert models[name]["description"] and models[name]["params"] > 0
    assert 1_200_000 < models["reduced-vgg16"]["params"] < 1_400_000


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ModelError, match="Unknown model 'vgg99'.*Registered:"):
        create_model("vgg99")


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("CBXBPD-FBDF", r"unknown letter 'X' at character 3"),
    ("CBCBPD--FBDF", "empty block at character 8"),
    ("CBCBPD-FBDF-CBP", "character 13 starts a convolution block"),
    ("CBCBPD", "final dense block"),
    ("BC-F", "'B' at character 1 must follow"),
    ("CBP-FPF", r"'P' at character 6 cannot be in a dense block"),
])
def test_invalid_notation_points_at_the_character(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_notation(text)


def test_widths_must_match_and_image_must_not_vanish():
    with pytest.raises(ConfigError, match="2 convolution block"):
        create_model("CP-CP-F", conv_widths=(8, 8, 8))
    with pytest.raises(ConfigError, match="before a convolution"):
        create_model("CCP-CCP-CCP-CCP-F", conv_widths=8)  # unpadded: 48 -> ... -> nothing


def test_width_scales_the_presets_that_take_one(tmp_path):
    from dataclasses import replace

    import keras

    from fer_core.runs.rundir import read_metrics
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    assert create_model("fer-vgg", width=8).count_params() < create_model("fer-vgg").count_params()
    # the width reaches the trained network and is saved with the run, so it can be rebuilt exactly
    cfg = TrainConfig.for_model("fer-vgg", data="demo:10", epochs=1, batch_size=35, width=4,
                                warmup_epochs=0, aug_warmup_epochs=0)
    run = train(cfg, tmp_path / "run")
    saved = keras.saving.load_model(run / "model.keras")
    assert saved.count_params() == create_model("fer-vgg", crop=cfg.crop, width=4).count_params()
    assert TrainConfig.load(run / "config.json").width == 4 and len(read_metrics(run)) == 1
    for preset, width in (("study-h", 16), ("fer-vgg", -1)):
        with pytest.raises(ConfigError) as bad:
            replace(TrainConfig.for_model(preset), width=width)
        assert "width" in bad.value.fields


def test_preprocessing_is_inside_the_model():
    model = create_model("tiny", crop=44)
    names = [layer.name for layer in model.layers]
    assert "rescale" in names and "center_crop" in names
    assert model.input_shape == (None, 48, 48, 1)


def test_every_registered_architecture_trains_on_an_odd_number_of_faces():
    """Regression: training mini-xception crashed the whole process (SIGSEGV in TensorFlow 2.21's
    oneDNN kernel for a strided 1x1 convolution) whenever a batch held an odd number of faces, as
    the last batch of a FER2013 epoch does (28,709 % 64 = 37). Each architecture takes one step on
    3 faces, in a child process, so that a crash fails this test instead of the test session."""
    script = (
        "import numpy as np, keras\n"
        "from fer_core.models.build import create_model, model_names\n"
        "x = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype('float32')\n"
        "y = keras.utils.to_categorical([0, 1, 2], 7)\n"
        "for name in model_names():\n"
        "    m = create_model(name, 7)\n"
        "    m.compile(keras.optimizers.SGD(0.01), 'categorical_crossentropy')\n"
        "    m.fit(x, y, batch_size=3, epochs=1, verbose=0)\n"
        "    print('trained', name, flush=True)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"})
    trained = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("trained ")]
    assert done.returncode == 0 and trained == model_names(), (done.returncode, trained, done.stderr[-2000:])
