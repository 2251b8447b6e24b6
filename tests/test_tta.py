import numpy as np
import pytest

from fer_core.errors import ConfigError
from fer_core.inference.forward import predict_proba, views
from fer_core.models.build import create_model


def test_views_counts_and_corner_shift():
    imgs = np.arange(2 * 48 * 48, dtype=np.uint32).reshape(2, 48, 48).astype(np.uint8)
    assert len(views(imgs, "none")) == 1 and len(views(imgs, "flip")) == 2
    ten = views(imgs, "tencrop", crop=44)
    assert len(ten) == 10 and all(v.shape == imgs.shape for v in ten)
    # the model's centre crop of a shifted view is the corner crop of the original
    top_left = ten[1][:, 2:46, 2:46]
    assert np.array_equal(top_left, imgs[:, 0:44, 0:44])
    assert np.array_equal(ten[5], imgs[:, :, ::-1])
    with pytest.raises(ConfigError, match="TTA 'rotate'"):
        views(imgs, "rotate")


@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_predict_proba_is_a_distribution(tta):
    model = create_model("tiny", crop=44)
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    p = predict_proba(model, faces, tta)
    assert p.shape == (3, 7) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
