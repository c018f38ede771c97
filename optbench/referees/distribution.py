"""Distances between a batch of outputs and the reference set, in the feature space of
a network trained on the domain (Inception weights cannot be downloaded offline).

FID and KID are torchmetrics' estimators (FrechetInceptionDistance and
KernelInceptionDistance, including KID's random subsets, drawn the same way), computed
here from statistics of the reference set computed once (`Reference`): its mean and
covariance, its kernel matrix and its k-NN radii. A batch then costs one small kernel
and covariance instead of a rebuild of the reference's; tests compare the numbers with
torchmetrics.

Precision, recall, density and coverage (Naeem et al. 2020) are written here: torchmetrics
has no PRDC, and the `prdc` package is unmaintained; tests compare this code with it.

The two-sample test (c2st) is the 5-fold cross-validated accuracy of a linear
discriminant with Ledoit-Wolf shrinkage, written here in closed form (the same
classifier as scikit-learn's LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto"); tests compare the two). It replaced a logistic regression
(scikit-learn, lbfgs, C = 0.1) that cost 50-100 ms per feature space with every library at
one thread, and 0.3-1.2 s when numpy's BLAS threads, which `--threads` does not limit,
competed for the cores; this one costs 10-40 ms (benchmarks/speed_referee.py). On the
same features the two agree within a few points of accuracy, the discriminant a little
higher on separable sets (0.99 against 0.95 on blurred digits)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

KID_SEED = 0          # seeds KID's subset draws (torchmetrics drew them from the global RNG)
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRDC_K = 5
C2ST_SEED = 0
C2ST_FOLDS = 5


@torch.no_grad()
def extract(net: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    from optbench.models.fixed_batch import in_batches, model_device
    return in_batches(net.features, x, batch, model_device(net))


def poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel (Binkowski et al. 2018): k(x, y) = (x.y / d + 1)^3."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x.double(), x.double())
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def _off_diagonal_sum(k: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return k[idx][:, idx].sum() - k.diagonal()[idx].sum()


def _mean_cov(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


class Reference:
    """One reference feature set and the statistics every batch is compared with,
    computed once: mean, covariance and its square root (FID), kernel matrix (KID),
    k-NN radii (PRDC)."""

    def __init__(self, feats: torch.Tensor, k: int = PRDC_K):
        self.feats = feats.double()
        self.mean, self.cov = _mean_cov(self.feats)
        w, v = torch.linalg.eigh(self.cov)
        self.cov_sqrt = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
        self.kernel = poly_kernel(self.feats, self.feats)
        self.k = k
        self.radii = _kth_neighbour_radius(self.feats, k)
        self._kid_subsets: dict[tuple[int, int, int], tuple] = {}

    def kid_subsets(self, n_fake: int, m: int, subsets: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """KID's subset draws for a batch of n_fake (reference indices, fake indices, each
        (subsets, m)) and the reference kernel's off-diagonal sum over each reference
        subset. They depend on the sizes only, so a batch size pays for them once."""
        key = (n_fake, m, subsets)
        if key not in self._kid_subsets:
            gen = torch.Generator().manual_seed(KID_SEED)
            draws = [(torch.randperm(len(self.feats), generator=gen)[:m],
                      torch.randperm(n_fake, generator=gen)[:m]) for _ in range(subsets)]
            i = torch.stack([a for a, _ in draws])
            j = torch.stack([b for _, b in draws])
            if m == len(self.feats):   # every subset is the whole reference
                kxx = (self.kernel.sum() - self.kernel.trace()).expand(subsets)
            else:
                kxx = torch.stack([_off_diagonal_sum(self.kernel, s) for s in i])
            self._kid_subsets[key] = (i, j, kxx)
        return self._kid_subsets[key]


def fid(ref: Reference, fake: torch.Tensor) -> float:
    """Frechet distance of two Gaussians (Heusel et al. 2017):
    |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2)). The trace of the root is
    summed over the eigenvalues of the symmetric S_r^(1/2) S_f S_r^(1/2), which has those
    of S_r S_f (torchmetrics takes the general eigenvalues of S_r S_f)."""
    mu, cov = _mean_cov(fake.double())
    root = torch.linalg.eigvalsh(ref.cov_sqrt @ cov @ ref.cov_sqrt).clamp_min(0).sqrt().sum()
    return float((ref.mean - mu).square().sum() + ref.cov.trace() + cov.trace() - 2 * root)


def kid(ref: Reference, fake: torch.Tensor, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 (Gretton et al. 2012) with the cubic
    polynomial kernel, mean and standard deviation over `subsets` random subsets of m = min(subset_size,
    n_ref, n_fake) points from each side. The subsets are torchmetrics' (per subset a
    reference permutation, then a fake one, from seed KID_SEED)."""
    f = fake.double()
    m = min(subset_size, len(ref.feats), len(f))
    i, j, kxx = ref.kid_subsets(len(f), m, subsets)
    if m == len(f):   # every subset holds all of `fake`: one kernel each, no indexing
        k_ff, k_rf = poly_kernel(f, f), poly_kernel(ref.feats, f)
        kyy = (k_ff.sum() - k_ff.trace()).expand(subsets)
        kxy = k_rf.sum(1)[i].sum(1)
    else:             # a large batch: the subsets' kernels only, as torchmetrics
        k_ff = [poly_kernel(f[b], f[b]) for b in j]
        kyy = torch.stack([k.sum() - k.trace() for k in k_ff])
        kxy = torch.stack([poly_kernel(ref.feats[a], f[b]).sum() for a, b in zip(i, j)])
    values = (kxx + kyy) / (m * (m - 1)) - 2 * kxy / m ** 2
    return float(values.mean()), float(values.std(unbiased=False))


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = KID_SUBSETS,
            kid_subset_size: int = KID_SUBSET_SIZE) -> dict[str, float]:
    """FID and KID (mean and std over subsets) between two feature sets."""
    ref = Reference(real)
    kid_mean, kid_std = kid(ref, fake, kid_subsets, kid_subset_size)
    return {"fid": fid(ref, fake), "kid": kid_mean, "kid_std": kid_std}


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = PRDC_K,
         real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020, eqs. 1-4). `real_radii`:
    the reference's k-NN radii, if already computed."""
    real_r = _kth_neighbour_radius(real, k) if real_radii is None else real_radii
    fake_r = _kth_neighbour_radius(fake, k)
    d = torch.cdist(real.double(), fake.double())        # (n_real, n_fake)
    inside = d < real_r[:, None]                          # fake j inside real i's ball
    return {
        "precision": float(inside.any(0).double().mean()),
        "recall": float((d < fake_r[None, :]).any(1).double().mean()),
        "density": float(inside.double().sum() / (k * fake.shape[0])),
        "coverage": float((d.min(1).values < real_r).double().mean()),
    }


def within_class_diversity(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise L2 feature distance among outputs of the same class, averaged over
    classes with two or more outputs: falls toward 0 when a class collapses to one mode."""
    per_class = []
    for c in labels.unique():
        f = feats[labels == c].double()
        if len(f) >= 2:
            d = torch.cdist(f, f)
            per_class.append(d.sum() / (len(f) * (len(f) - 1)))
    return float(torch.stack(per_class).mean()) if per_class else float("nan")


def _standard_scale(x: torch.Tensor) -> torch.Tensor:
    """Per-feature standard deviation as scikit-learn's StandardScaler: 1 for constants."""
    mean, var = x.mean(0), x.var(0, unbiased=False)
    eps = torch.finfo(torch.float64).eps
    n = len(x)
    constant = (var <= n * eps * var + (n * mean * eps) ** 2) | (var.sqrt() < 10 * eps)
    return torch.where(constant, torch.ones_like(var), var.sqrt())


def ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Ledoit and Wolf (2004) shrunk covariance of the rows of x: (1 - a) S + a tr(S)/p I,
    with the shrinkage a estimated from the data (the formula of scikit-learn's
    `ledoit_wolf_shrinkage`)."""
    n, p = x.shape
    x = x - x.mean(0)
    emp = x.T @ x / n
    mu = emp.trace() / p
    x2 = x * x
    delta_ = emp.square().sum()
    beta = ((x2.T @ x2).sum() / n - delta_) / (n * p)
    delta = (delta_ - 2 * mu * emp.trace() + p * mu ** 2) / p
    beta = torch.minimum(beta, delta)
    a = beta / delta if beta > 0 else 0.0
    return (1 - a) * emp + a * mu * torch.eye(p, dtype=x.dtype)


def _lda_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class linear discriminant with Ledoit-Wolf shrinkage, as scikit-learn's
    LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"): class covariances shrunk
    on standardized features, weighted by the class priors; returns (w, b) and predicts
    class 1 where x.w + b > 0."""
    priors = torch.stack([(y == c).double().mean() for c in (0, 1)])
    means, cov = [], 0
    for c in (0, 1):
        xc = x[y == c]
        s = _standard_scale(xc)
        cov = cov + priors[c] * s[:, None] * ledoit_wolf(xc / s) * s[None, :]
        means.append(xc.mean(0))
    means = torch.stack(means)
    chol, info = torch.linalg.cholesky_ex(cov)   # positive definite unless nothing was shrunk
    coef = (torch.cholesky_solve(means.T, chol) if info == 0 else
            torch.linalg.lstsq(cov, means.T).solution).T          # (2, d)
    intercept = -0.5 * (means * coef).sum(1) + priors.log()
    return coef[1] - coef[0], intercept[1] - intercept[0]


def c2st_accuracy(real: torch.Tensor, fake: torch.Tensor, seed: int = C2ST_SEED) -> float:
    """Classifier two-sample test (Lopez-Paz and Oquab 2017): the cross-validated held-out
    accuracy of a fresh linear discriminant (Ledoit-Wolf shrinkage) telling `fake`
    features from as many `real` ones. 0.5 means indistinguishable, 1.0 fully separable.
    Closed form, a few ms, so it runs at every pressure level in every feature space."""
    from sklearn.model_selection import StratifiedKFold
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    r = real[torch.from_numpy(rng.permutation(len(real))[:n])].double()
    f = fake[torch.from_numpy(rng.permutation(len(fake))[:n])].double()
    x, y = torch.cat([r, f]), torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    folds = StratifiedKFold(min(C2ST_FOLDS, n), shuffle=True, random_state=seed)
    accuracy = []
    for train, test in folds.split(np.zeros(2 * n), y.numpy()):
        train, test = torch.from_numpy(train), torch.from_numpy(test)
        w, b = _lda_fit(x[train], y[train])
        pred = (x[test] @ w + b > 0).long()
        accuracy.append(float((pred == y[test]).double().mean()))
    return float(np.mean(accuracy))


def distribution_metrics(ref: Reference, fake: torch.Tensor) -> dict[str, float]:
    """Every distribution metric of one feature set against one reference."""
    kid_mean, kid_std = kid(ref, fake)
    out = {"fid": fid(ref, fake), "kid": kid_mean, "kid_std": kid_std}
    return out | prdc(ref.feats, fake, ref.k, ref.radii) | {"c2st": c2st_accuracy(ref.feats, fake)}
