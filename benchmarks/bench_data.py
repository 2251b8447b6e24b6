"""Benchmark the data layer: CSV parsing against the naive approach, and cached second loads.

Writes a FER2013 CSV from the image folders in ``FER2013_DIR`` into a temporary folder, then
prints, measured in one run on this machine:
  - the naive parse (pd.read_csv + per-row str.split + np.array) and ours (load_dataset);
  - the second load of the CSV and of the image folder from the cache.

Usage: FER2013_DIR=/path/to/fer2013 python benchmarks/bench_data.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer_core.data.loading import load_dataset, write_csv  # noqa: E402


def naive(path: Path) -> np.ndarray:
    frame = pd.read_csv(path)
    return np.stack([np.array(p.split(), dtype=np.uint8).reshape(48, 48) for p in frame["pixels"]])


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = os.environ.get("FER2013_DIR")
    if not root:
        sys.exit("Set FER2013_DIR to the FER2013 image folder.")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FER_DATA_DIR"] = str(Path(tmp) / "data")
        t0 = time.perf_counter()
        folder = load_dataset(root, use_cache=False)
        t_folder = time.perf_counter() - t0
        csv = write_csv(folder, Path(tmp) / "fer2013.csv")
        print(f"machine: {os.cpu_count()} CPU cores; CSV {csv.stat().st_size / 1e6:.0f} MB, {len(folder):,} rows")

        t_naive, ref = best_of(lambda: naive(csv), args.repeat)
        t_ours, ds = best_of(lambda: load_dataset(csv, use_cache=False), args.repeat)
        assert np.array_equal(ref, ds.images), "parsers disagree"
        print(f"CSV parse, naive pd.read_csv + str.split : {t_naive:7.2f} s")
        print(f"CSV parse, load_dataset (no cache)      : {t_ours:7.2f} s   ({t_naive / t_ours:.1f}x faster)")

        load_dataset(csv)  # fills the cache
        t_csv_cached, _ = best_of(lambda: load_dataset(csv), args.repeat)
        print(f"CSV second load (cache)                 : {t_csv_cached:7.3f} s")
        print(f"image folder, first load (decode)       : {t_folder:7.2f} s")
        load_dataset(root)
        t_dir_cached, _ = best_of(lambda: load_dataset(root), args.repeat)
        print(f"image folder second load (cache)        : {t_dir_cached:7.3f} s")


if __name__ == "__main__":
    main()
