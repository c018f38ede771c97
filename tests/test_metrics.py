"""Referee metrics checked against independent computations."""
import numpy as np
import pytest
import torch
from scipy import linalg

from optbench.referees.distribution import fid_kid, prdc


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Heusel et al. 2017, eq. for the Frechet distance of two Gaussians."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def unbiased_poly_mmd(a: np.ndarray, b: np.ndarray) -> float:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def test_fid_matches_scipy_on_real_features(real_features):
    fake, ref = real_features
    fake = fake + 0.3 * torch.randn(fake.shape, generator=torch.Generator().manual_seed(0))
    ours = fid_kid(ref, fake)["fid"]
    assert ours == pytest.approx(scipy_fid(ref.double().numpy(), fake.double().numpy()), rel=1e-4)


def test_fid_matches_scipy_on_gaussians():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(400, 8, generator=g, dtype=torch.float64)
    b = torch.randn(300, 8, generator=g, dtype=torch.float64) @ torch.diag(torch.linspace(0.5, 2, 8, dtype=torch.float64)) + 1
    assert fid_kid(a, b)["fid"] == pytest.approx(scipy_fid(a.numpy(), b.numpy()), rel=1e-6)


def test_kid_with_full_subsets_equals_unbiased_mmd():
    # One subset holding every sample makes torchmetrics' KID the full unbiased MMD.
    g = torch.Generator().manual_seed(2)
    a = torch.randn(120, 6, generator=g, dtype=torch.float64)
    b = torch.randn(120, 6, generator=g, dtype=torch.float64) + 0.5
    out = fid_kid(a, b, kid_subsets=3, kid_subset_size=120)
    assert out["kid"] == pytest.approx(unbiased_poly_mmd(a.numpy(), b.numpy()), rel=1e-6)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-9)


def test_fid_and_kid_equal_torchmetrics_with_random_subsets(real_features):
    """Reference statistics computed once, KID's subsets indexed from precomputed kernels:
    the same numbers as torchmetrics' own FID and KID (subsets drawn from seed 0)."""
    import warnings

    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from optbench.referees.distribution import KID_SEED

    class _Precomputed(torch.nn.Module):   # identity "feature extractor" of d features
        def __init__(self, d: int):
            super().__init__()
            self.num_features = d

        def forward(self, feats):
            return feats

    fake, ref = real_features
    fake = fake[:200] + 0.2 * torch.randn(fake[:200].shape, generator=torch.Generator().manual_seed(6))
    ours = fid_kid(ref, fake)
    d = ref.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d), normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(d), subsets=100, subset_size=200, normalize=False)
    for metric in (fid, kid):
        metric.update(ref.double(), real=True)
        metric.update(fake.double(), real=False)
    torch.manual_seed(KID_SEED)
    kid_mean, kid_std = kid.compute()
    assert ours["fid"] == pytest.approx(float(fid.compute()), rel=1e-7)
    assert ours["kid"] == pytest.approx(float(kid_mean), rel=1e-9)
    assert ours["kid_std"] == pytest.approx(float(kid_std), rel=1e-9)


def test_prdc_matches_reference_package():
    prdc_pkg = pytest.importorskip("prdc")
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 10))
    fake = rng.normal(size=(200, 10)) * 1.3 + 0.4
    theirs = prdc_pkg.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key


def test_real_against_real_is_near_zero_kid_and_full_coverage(referee):
    from optbench.domains import get_domain
    mnist = get_domain("mnist")
    x_gen, _ = mnist.load_split("generator_train")
    real = referee.distribution(x_gen[:1000])     # 1,000 real digits vs the 1,000 reference
    noise = referee.distribution(torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(4)))
    assert abs(real["kid"]) < 1e-5 * noise["kid"] and abs(real["kid"]) < 0.01
    assert real["fid"] < 1e-3 * noise["fid"]
    assert real["coverage"] > 0.95 and real["precision"] > 0.9 and real["recall"] > 0.9
    assert 0.9 < real["density"] < 1.1
    assert noise["precision"] < 0.05 and noise["coverage"] < 0.05


def test_within_class_diversity_matches_scipy_pdist():
    from scipy.spatial.distance import pdist

    from optbench.referees.distribution import within_class_diversity
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(30, 4))
    labels = np.array([0] * 10 + [1] * 15 + [2] * 4 + [3])   # class 3 has one sample: skipped
    expected = np.mean([pdist(feats[labels == c]).mean() for c in (0, 1, 2)])
    ours = within_class_diversity(torch.from_numpy(feats), torch.from_numpy(labels))
    assert ours == pytest.approx(expected, rel=1e-12)


def test_c2st_equals_scikit_learns_shrinkage_lda_cross_validated(real_features):
    """The closed-form discriminant is scikit-learn's LinearDiscriminantAnalysis(lsqr,
    shrinkage="auto") fold for fold: same subsample, same folds, same accuracy."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from optbench.referees.distribution import C2ST_FOLDS, C2ST_SEED, c2st_accuracy
    real, ref = real_features
    g = torch.Generator().manual_seed(7)
    for fake in (real[:128], real[128:256] + 0.15 * torch.randn(128, real.shape[1], generator=g)):
        rng = np.random.default_rng(C2ST_SEED)
        n = len(fake)
        r = ref[rng.permutation(len(ref))[:n]].double().numpy()
        f = fake[rng.permutation(n)].double().numpy()
        x, y = np.concatenate([r, f]), np.r_[np.zeros(n), np.ones(n)]
        folds = StratifiedKFold(C2ST_FOLDS, shuffle=True, random_state=C2ST_SEED)
        theirs = cross_val_score(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), x, y, cv=folds).mean()
        assert c2st_accuracy(ref, fake) == pytest.approx(theirs, abs=1e-12)


def test_c2st_matches_bayes_accuracy_of_gaussians():
    """Two Gaussians whose means differ by delta along one axis: the best possible
    accuracy is Phi(delta / 2) (scipy); the fresh classifier gets close to it, and to 0.5
    on identical distributions."""
    from scipy.stats import norm
    from optbench.referees.distribution import c2st_accuracy
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 8, generator=g)
    b = torch.randn(3000, 8, generator=g)
    assert abs(c2st_accuracy(a, b) - 0.5) < 0.03
    shifted = b.clone()
    shifted[:, 0] += 1.0
    assert abs(c2st_accuracy(a, shifted) - norm.cdf(0.5)) < 0.03
    far = b.clone()
    far[:, 3] += 6.0
    assert c2st_accuracy(a, far) > 0.99
