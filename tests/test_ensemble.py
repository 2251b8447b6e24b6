"""Ensembles: one .keras model averaging its members, usable everywhere, explained by its members."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fer_core.data.demo import make_demo_dataset
from fer_core.inference.forward import model_crop, predict_proba
from fer_core.inference.loader import ModelRef, load_model
from fer_core.inference.explain import gradcam
from fer_core.inference.photo import analyse
from fer_core.models.ensemble import build_ensemble, members
from fer_core.runs import rundir


def _member(trained_run):
    return load_model(ModelRef(rundir.final_model(trained_run), "m", rundir.read_classes(trained_run)))


def test_an_ensemble_averages_its_members_and_saves_as_one_safe_keras_file(trained_run, tmp_path):
    import keras

    from fer_core.models.build import create_model

    classes = rundir.read_classes(trained_run)
    first = _member(trained_run)
    second = create_model("tiny", len(classes), crop=40)  # another architecture setting: a 40-px crop
    faces = make_demo_dataset(per_class=4, seed=5).images
    expected = (np.asarray(first(faces[..., None].astype("float32"))) + np.asarray(second(faces[..., None].astype("float32")))) / 2
    ens = build_ensemble([first, second])
    path = tmp_path / "ensemble.keras"
    ens.save(path)
    loaded = load_model(ModelRef(path, "ensemble", classes))  # safe mode, input and softmax checks
    got = predict_proba(loaded, faces, "none")
    assert np.allclose(got, expected, atol=1e-5)
    assert [m.name for m in members(loaded)] == ["member_1", "member_2"] and model_crop(loaded) == 40
    assert members(first) == [] and isinstance(loaded, keras.Model)


def test_gradcam_of_an_ensemble_is_the_mean_of_its_members_maps(trained_run):
    classes = rundir.read_classes(trained_run)
    first, second = _member(trained_run), _member(trained_run)
    ens = build_ensemble([first, second])
    faces = make_demo_dataset(per_class=3, seed=1).images
    targets = predict_proba(ens, faces).argmax(1)
    own = gradcam(members(ens)[0], faces, targets)
    maps = gradcam(ens, faces, targets)
    assert len(maps) == len(faces)
    for (m, note), (alone, _) in zip(maps, own):
        # two copies of one network: the mean of two equal maps is that map
        assert (m is None) == (alone is None) and (m is None or np.allclose(m, alone, atol=1e-5)), note
    assert sum(m is not None for m, _ in maps) >= len(faces) // 2
    png = io.BytesIO()
    Image.fromarray(faces[0]).save(png, "PNG")
    (res,) = analyse([("face.png", png.getvalue())], ens, classes, explain=True, detect="never")
    assert res.faces[0].label in classes
    assert res.faces[0].cam is not None and res.faces[0].cam.shape == (48, 48), res.faces[0].cam_note
