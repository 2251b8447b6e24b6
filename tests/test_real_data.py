"""Integration tests on the real FER2013 (``FER2013_DIR``): exact counts in both layouts."""

import numpy as np
import pytest

from fer_core.config import CLASS_NAMES
from fer_core.data.loading import load_dataset, write_csv

from .conftest import FER_COUNTS

pytestmark = [pytest.mark.real_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def real(real_data_dir):
    return load_dataset(real_data_dir)


def test_folder_layout_counts_match_readme(real):
    assert len(real) == 35887 and real.class_names == CLASS_NAMES
    assert real.counts() == FER_COUNTS
    assert real.images.shape == (35887, 48, 48) and real.images.dtype == np.uint8
    assert real.skipped == 0


def test_csv_written_from_folder_has_same_counts_and_pixels(real, tmp_path_factory):
    path = write_csv(real, tmp_path_factory.mktemp("csv") / "fer2013.csv")
    ds = load_dataset(path, use_cache=False)
    assert ds.counts() == FER_COUNTS
    assert np.array_equal(ds.images, real.images) and np.array_equal(ds.labels, real.labels)
