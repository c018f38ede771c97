import numpy as np

from optbench.domains import get_domain
mnist = get_domain("mnist")


def test_splits_are_disjoint_balanced_and_sized():
    seen = set()
    for split, per_class in mnist.splits.items():
        idx = mnist.split_indices(split)
        assert not seen & set(idx.tolist()), f"{split} overlaps another split"
        seen |= set(idx.tolist())
        _, y = mnist.load_split(split)
        assert np.bincount(y.numpy(), minlength=10).tolist() == [per_class] * 10
    assert len(seen) == 5000
    assert len(mnist.split_indices("reference")) >= 1000


def test_images_are_scaled_and_shuffled():
    x, y = mnist.load_split("proxy_train")
    assert x.dtype.is_floating_point and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert len(set(y[:20].tolist())) > 3  # not sorted by label
