"""Descriptive statistics of a data set for the Dataset page: counts, mean faces, histograms."""

from __future__ import annotations

import numpy as np

from fer_core.config import SPLITS
from fer_core.data.loading import Dataset


def counts_table(ds: Dataset) -> list[dict]:
    """Return one ``{"class", "split", "count"}`` record per class and split (long format)."""
    table = ds.counts()
    return [{"class": c, "split": s, "count": table[s][c]} for s in SPLITS for c in ds.class_names]


def mean_faces(ds: Dataset, split: str | None = None) -> dict[str, np.ndarray]:
    """Return the mean 48x48 face (uint8) of each class that has images in ``split``."""
    sub = ds if split is None else ds.subset(split)
    out = {}
    for i, name in enumerate(sub.class_names):
        imgs = sub.images[sub.labels == i]
        if len(imgs):
            out[name] = imgs.mean(axis=0, dtype=np.float64).round().astype(np.uint8)
    return out


def pixel_histogram(ds: Dataset, bins: int = 32) -> list[dict]:
    """Return ``{"intensity", "fraction"}`` per bin of the pixel-intensity histogram."""
    counts = np.bincount(ds.images.ravel(), minlength=256).astype(np.float64)
    per_bin = counts.reshape(bins, -1).sum(axis=1)
    total = per_bin.sum() or 1.0
    width = 256 // bins
    return [{"intensity": i * width, "fraction": float(n / total)} for i, n in enumerate(per_bin)]


def page_indices(ds: Dataset, split: str | None, class_name: str | None, page: int, per_page: int) -> tuple[np.ndarray, int]:
    """Return the data set indices shown on one page of the sample grid, and the page count."""
    mask = np.ones(len(ds), bool)
    if split:
        mask &= ds.splits == split
    if class_name:
        mask &= ds.labels == ds.class_names.index(class_name)
    idx = np.flatnonzero(mask)
    pages = max(1, -(-len(idx) // per_page))
    page = min(max(page, 1), pages)
    return idx[(page - 1) * per_page:page * per_page], pages
