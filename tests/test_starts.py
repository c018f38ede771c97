"""Real starting digits are drawn without replacement within a seed (issue 12), and
sample i still depends only on (seed, i)."""
import torch

from optbench.domains import get_domain
from optbench.pressure.starts import make_starts


def _distinct_rows(x: torch.Tensor) -> int:
    return len(torch.unique(x.flatten(1), dim=0))


def test_real_starts_have_no_duplicates():
    n_test = len(get_domain("mnist").load_split("test")[0])    # 500
    assert _distinct_rows(get_domain("mnist").load_split("test")[0]) == n_test  # no twins in the split
    for seed in (0, 1, 2):
        x128, _ = make_starts("mnist", "real", 128, seed)
        assert _distinct_rows(x128) == 128
    x500, _ = make_starts("mnist", "real", n_test, 0)
    assert _distinct_rows(x500) == n_test                        # the whole split, once each
    more, _ = make_starts("mnist", "real", n_test + 20, 0)       # beyond the split: it cycles
    assert torch.equal(more[n_test:], more[:20])


def test_sample_i_does_not_depend_on_n():
    x10, t10 = make_starts("mnist", "real", 10, 4)
    x300, t300 = make_starts("mnist", "real", 300, 4)
    assert torch.equal(x10, x300[:10]) and torch.equal(t10, t300[:10])
    x1, t1 = make_starts("mnist", "real", 1, 4)
    assert torch.equal(x1[0], x300[0]) and t1[0] == t300[0]


def test_seeds_draw_different_digits_and_targets_stay_other_classes():
    x_test, y_test = get_domain("mnist").load_split("test")
    a, ta = make_starts("mnist", "real", 128, 0)
    b, _ = make_starts("mnist", "real", 128, 1)
    assert not torch.equal(a, b)
    flat = x_test.flatten(1)
    labels = torch.stack([y_test[(flat == x.flatten()).all(1)][0] for x in a])
    assert (labels != ta).all()
    assert len(ta.unique()) == 10                                # targets spread over classes
