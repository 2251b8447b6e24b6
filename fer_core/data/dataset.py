"""The in-memory data set every source loads into, and the stratified split."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fer_core.config import SPLITS
from fer_core.errors import ConfigError, DataError


@dataclass
class Dataset:
    """Face images with their labels and splits, the same whatever the source.

    Attributes:
        images: uint8 array (N, 48, 48).
        labels: int64 array (N,), indices into ``class_names``.
        splits: str array (N,), each one of ``SPLITS``.
        class_names: names of the classes, in label order.
        source: where the data came from (path or ``"demo"``).
        origins: str array (N,): the file name or CSV row each image came from.
        skipped: how many bad rows or files were skipped (``skip_bad=True``).
        problems: the first few reasons for skipped rows or files.
        merge: the class merging applied (``""`` for none).
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    class_names: tuple[str, ...]
    source: str
    origins: np.ndarray
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    merge: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def select(self, mask: np.ndarray) -> "Dataset":
        """Return the images where ``mask`` (boolean or index array) selects them."""
        return replace(self, images=self.images[mask], labels=self.labels[mask],
                       splits=self.splits[mask], origins=self.origins[mask])

    def subset(self, split: str | None = None, class_name: str | None = None) -> "Dataset":
        """Return the images of one split and/or one class (``None`` means all)."""
        mask = np.ones(len(self), bool)
        if split is not None:
            if split not in SPLITS:
                raise DataError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
            mask &= self.splits == split
        if class_name is not None:
            if class_name not in self.class_names:
                raise DataError(f"Unknown class {class_name!r}; this data set has {', '.join(self.class_names)}.")
            mask &= self.labels == self.class_names.index(class_name)
        return self.select(mask)

    def fit_splits(self) -> tuple["Dataset", "Dataset"]:
        """The Training and PublicTest subsets, which training and recalibration both need.

        Raises:
            ConfigError: either split has no images.
        """
        tr, va = self.subset("Training"), self.subset("PublicTest")
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(f"{self.source}: the Training and PublicTest splits must both have images; "
                              "give a data set with images in both (the Dataset page shows its splits).")
        return tr, va

    def counts(self) -> dict[str, dict[str, int]]:
        """Return ``{split: {class: number of images}}`` over all splits and classes."""
        table = {}
        for split in SPLITS:
            in_split = self.labels[self.splits == split]
            n = np.bincount(in_split, minlength=self.num_classes)
            table[split] = {c: int(n[i]) for i, c in enumerate(self.class_names)}
        return table

    def summary(self) -> dict:
        """Return the JSON-ready summary printed by ``python -m fer_core data summary``."""
        out = {"source": self.source, "num_images": len(self), "classes": list(self.class_names),
               "counts": self.counts()}
        if self.merge:
            out["merge"] = self.merge
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> np.ndarray:
    """Assign each item a split, keeping every class's proportions.

    Args:
        labels: integer labels.
        fractions: ``{split: fraction}``; the last split takes the remainder.
        seed: fixes the assignment, so the same data always splits the same way.
    """
    out = np.empty(len(labels), dtype=object)
    rng = np.random.default_rng(seed)
    names = list(fractions)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for name in names[:-1]:
            stop = start + int(round(fractions[name] * len(idx)))
            out[idx[start:stop]] = name
            start = stop
        out[idx[start:]] = names[-1]
    return out
