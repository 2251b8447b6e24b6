"""TensorBoard event logs per run, written when the ``tensorboard`` package is installed.

TensorFlow 2.21 no longer installs TensorBoard; without it nothing is written and nothing
else changes. The event files are written with TensorFlow's summary writer, so runs trained under
another Keras backend (which never imports TensorFlow) have none: their curves are on the Runs
page and in ``metrics.jsonl``. Each committed epoch (the row :mod:`fer_core.runs.rundir` records, after the commit)
is written under the run's ``tensorboard/`` folder, in the layout Keras' own callback uses
(``train/`` and ``validation/`` with ``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate``), so ``tensorboard --logdir data/runs`` shows every run beside the
others, with the same numbers as the Runs page. A cut-short epoch is never written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fer_core.device import keras_backend
from fer_core.runs import rundir


def enabled() -> bool:
    """Whether this process writes event logs: TensorBoard is installed and Keras runs on TensorFlow."""
    return importlib.util.find_spec("tensorboard") is not None and keras_backend() == "tensorflow"


class EpochLog:
    """Writes committed epochs of one run as TensorBoard scalars (step = epoch number)."""

    def __init__(self, run_dir: str | Path):
        import tensorflow as tf

        root = rundir.tensorboard_dir(run_dir)
        self._tf = tf
        self._writers = {split: tf.summary.create_file_writer(str(root / split)) for split in ("train", "validation")}

    def write(self, row: dict) -> None:
        tf, epoch = self._tf, int(row["epoch"])
        for split, prefix in (("train", ""), ("validation", "val_")):
            with self._writers[split].as_default(step=epoch):
                for name in ("loss", "accuracy"):
                    if isinstance(row.get(prefix + name), (int, float)):
                        tf.summary.scalar(f"epoch_{name}", float(row[prefix + name]))
                if split == "train" and isinstance(row.get("lr"), (int, float)):
                    tf.summary.scalar("epoch_learning_rate", float(row["lr"]))
            self._writers[split].flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
