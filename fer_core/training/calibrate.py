"""Batch-norm recalibration: re-estimate a trained model's BN statistics on clean faces.

During training, batch norm's moving mean and variance follow the *augmented* batches (random
crops, rotations, zoom, erasing), yet the model is used on clean, centre-cropped faces. One pass
over the un-augmented Training faces (half of them mirrored, as flip and ten-crop TTA see them)
re-estimates the statistics for the inputs the model will really get; no weight is trained.
Izmailov et al. (2018) recompute BN statistics this way after averaging weights; Touvron et al.
(2019) show the train/test input mismatch it corrects.

``python -m fer_core recalibrate RUN_DIR`` applies it to a finished run: the recalibrated model
becomes the run's ``model.keras`` only if it is at least as accurate on the validation split
(PublicTest) as the selected checkpoint, which stays untouched in ``best.keras``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fer_core.data.loading import load_dataset
from fer_core.errors import ConfigError
from fer_core.inference.forward import DEFAULT_TTA, predict_proba
from fer_core.inference.loader import ModelRef, load_model
from fer_core.models.build import all_layers
from fer_core.runs import rundir


def _layers(model, kind: str) -> list:
    """Every layer of ``keras.layers.<kind>`` (subclasses too), nested models included."""
    import keras

    cls = getattr(keras.layers, kind)
    return [layer for layer in all_layers(model) if isinstance(layer, cls)]


def recalibrate_bn(model, images: np.ndarray, batch_size: int = 256, seed: int = 0) -> int:
    """Set every BatchNormalization layer's moving statistics to their average over ``images``.

    Batch statistics are averaged with equal weight per batch (the momentum of batch k is
    k/(k+1)); dropout is switched off meanwhile, as it is at inference.

    Args:
        model: a Keras model taking uint8 faces (N, 48, 48, 1) or (N, 48, 48).
        images: uint8 faces (N, 48, 48), clean (not augmented).
        batch_size: faces per forward pass.
        seed: which half of the faces is mirrored.

    Returns:
        The number of batch-norm layers recalibrated (0 leaves the model unchanged).
    """
    bns, drops = _layers(model, "BatchNormalization"), _layers(model, "Dropout")
    if not bns or len(images) == 0:
        return 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    saved = ([layer.momentum for layer in bns], [layer.rate for layer in drops])
    try:
        for layer in drops:
            layer.rate = 0.0
        for k, start in enumerate(range(0, len(order), batch_size)):
            x = np.asarray(images[order[start:start + batch_size]], np.uint8).copy()
            mirror = rng.random(len(x)) < 0.5
            x[mirror] = x[mirror][:, :, ::-1]
            for layer in bns:
                layer.momentum = k / (k + 1)  # read at call time: eager calls see the new value
            model(x[..., None], training=True)
    finally:
        for layer, m in zip(bns, saved[0]):
            layer.momentum = m
        for layer, r in zip(drops, saved[1]):
            layer.rate = r
    return len(bns)


def recalibrate_if_better(model, train_images: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
                          tta: str = "none", seed: int = 0, log=print) -> dict:
    """Recalibrate ``model`` in place and undo it if validation accuracy drops.

    Returns:
        The record: kept, layers, images, tta, val_accuracy_before/after (no accuracies when the
        model has no batch norm, which is left alone without evaluating anything).
    """
    record = {"kept": False, "layers": 0, "images": int(len(train_images)), "tta": tta}
    if not _layers(model, "BatchNormalization"):
        log("batch-norm recalibration: the model has no batch-norm layer, nothing to do")
        return record

    def accuracy() -> float:
        return float((predict_proba(model, val_images, tta).argmax(1) == val_labels).mean())

    saved = model.get_weights()
    before = accuracy()
    layers = recalibrate_bn(model, train_images, seed=seed)
    after = accuracy()
    kept = layers > 0 and after >= before
    if not kept:
        model.set_weights(saved)
    log(f"batch-norm recalibration: statistics of {layers} layers re-estimated on {len(train_images):,} clean Training faces: "
        f"validation accuracy ({tta}) {before:.4f} -> {after:.4f}, "
        + ("kept" if kept else "not better, the checkpoint's statistics are kept"))
    return {**record, "kept": kept, "layers": layers, "val_accuracy_before": round(before, 4),
            "val_accuracy_after": round(after, 4)}


def recalibrate_run(run_dir: str | Path, data: str | None = None, tta: str = DEFAULT_TTA, log=print) -> dict:
    """Recalibrate a finished run's selected checkpoint; keep it if validation accuracy does not drop.

    Args:
        run_dir: a finished run directory (it needs ``best.keras``).
        data: the data source (default: the one the run was trained on).
        tta: the test-time augmentation the validation accuracy is measured with.
        log: where progress lines go.

    Returns:
        What is recorded under ``bn_recalibration`` in the run's ``run.json``.

    Raises:
        ConfigError: not a finished run, or its data cannot be loaded.
    """
    run_dir = Path(run_dir)
    if not rundir.is_run(run_dir):
        raise ConfigError(f"{run_dir}: not a run directory (no config.json); give a folder under data/runs.")
    cfg, info = rundir.read_config(run_dir), rundir.read_info(run_dir)
    best_file = rundir.checkpoint(run_dir, "best")
    if not rundir.is_finished(info) or best_file is None:
        raise ConfigError(f"{run_dir}: recalibrate a finished run; this one is {info.get('status', 'new')} "
                          f"(resume it with 'python -m fer_core train --resume {run_dir}').")
    ds = load_dataset(data or cfg.data, merge=cfg.merge)
    tr, va = ds.fit_splits()
    classes = rundir.read_classes(run_dir) or ds.class_names
    with rundir.lock(run_dir):
        model = load_model(ModelRef(best_file, run_dir.name, classes, run_dir, cfg.merge))
        t0 = time.perf_counter()
        record = recalibrate_if_better(model, tr.images, va.images, va.labels, tta, seed=cfg.seed, log=log)
        rundir.save_model(model, rundir.final_model(run_dir))  # the selected checkpoint's weights, recalibrated or not
        record = {**record, "by": "recalibrate", "data_source": ds.source,
                  "seconds": round(time.perf_counter() - t0, 1), "when": time.time()}
        rundir.update_info(run_dir, **{rundir.BN_RECORD: record})
    return record
