import numpy as np

from fer_core.config import CLASS_NAMES
from fer_core.data.demo import make_demo_dataset


def test_demo_is_deterministic_and_complete():
    a = make_demo_dataset(per_class=10, seed=3)
    b = make_demo_dataset(per_class=10, seed=3)
    c = make_demo_dataset(per_class=10, seed=4)
    assert a.images.shape == (70, 48, 48) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.class_names == CLASS_NAMES
    assert np.bincount(a.labels, minlength=7).tolist() == [10] * 7


def test_demo_split_is_stratified_80_10_10():
    ds = make_demo_dataset(per_class=20, seed=0)
    counts = ds.counts()
    assert all(counts["Training"][c] == 16 for c in CLASS_NAMES)
    assert all(counts["PublicTest"][c] == 2 and counts["PrivateTest"][c] == 2 for c in CLASS_NAMES)


def test_demo_classes_differ_visibly():
    ds = make_demo_dataset(per_class=30, seed=0)
    means = np.stack([ds.images[ds.labels == i].mean(axis=0) for i in range(7)])
    # Mean faces of different classes must differ clearly more than noise would explain.
    dists = [np.abs(means[i] - means[j]).mean() for i in range(7) for j in range(i + 1, 7)]
    assert min(dists) > 1.0
