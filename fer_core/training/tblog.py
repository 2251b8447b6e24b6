"""TensorBoard event logs per run, written when the ``tensorboard`` package is installed.

TensorFlow 2.21 no longer installs TensorBoard; without it nothing is written and nothing
else changes. The event files are written with TensorFlow's summary writer, so runs trained under
another Keras backend (which never imports TensorFlow) have none: their curves are on the Runs
page and in ``metrics.jsonl``. Each committed epoch (the row :mod:`fer_core.runs.rundir` records, after the commit)
is written under the run's ``tensorboard/`` folder, in the layout Keras' own callback uses
(``train/`` and ``validation/`` with ``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate``), so ``tensorboard --logdir data/runs`` shows every run beside the
others, with the same numbers as the Runs page. A cut-short epoch is never written.

An epoch is written after its commit, so a worker killed between the two leaves a committed epoch
that the log lacks: a resumed run first writes, split by split, the committed epochs its log does
not hold yet (:meth:`EpochLog.catch_up`), so the log stays gap-free.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fer_core.device import keras_backend
from fer_core.runs import rundir


def enabled() -> bool:
    """Whether this process writes event logs: TensorBoard is installed and Keras runs on TensorFlow."""
    return importlib.util.find_spec("tensorboard") is not None and keras_backend() == "tensorflow"


SPLITS = ("train", "validation")


def logged_epochs(folder: Path) -> set[int]:
    """The epochs whose accuracy a split's event files hold (a record cut short by a kill ends the reading)."""
    import tensorflow as tf

    steps: set[int] = set()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                steps.update(event.step for v in event.summary.value if v.tag == "epoch_accuracy")
        except Exception:  # DataLossError: the last record, cut short; what was read before stands
            continue
    return steps


class EpochLog:
    """Writes committed epochs of one run as TensorBoard scalars (step = epoch number)."""

    def __init__(self, run_dir: str | Path):
        import tensorflow as tf

        root = rundir.tensorboard_dir(run_dir)
        self._tf = tf
        self._writers = {split: tf.summary.create_file_writer(str(root / split)) for split in SPLITS}
        self.catch_up(run_dir, {split: logged_epochs(root / split) for split in SPLITS})

    def catch_up(self, run_dir: str | Path, logged: dict[str, set[int]]) -> None:
        """Write the committed epochs that ``logged`` (each split's epochs already in the log) lacks."""
        for row in rundir.read_metrics(run_dir):
            missing = [split for split in SPLITS if int(row["epoch"]) not in logged[split]]
            if missing:
                self.write(row, missing)

    def write(self, row: dict, splits: tuple[str, ...] | list[str] = SPLITS) -> None:
        tf, epoch = self._tf, int(row["epoch"])
        for split, prefix in (("train", ""), ("validation", "val_")):
            if split not in splits:
                continue
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
