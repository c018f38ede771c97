"""Distances between a batch of outputs and the reference set, in the feature space of
a network trained on the domain (Inception weights cannot be downloaded offline).

FID and KID come from torchmetrics. Precision, recall, density and coverage (Naeem et
al. 2020) are written here: torchmetrics has no PRDC, and the `prdc` package is
unmaintained; tests compare this code with it."""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

KID_SEED = 0  # torchmetrics draws KID subsets from the global torch RNG


class _Precomputed(nn.Module):
    """Identity 'feature extractor': we hand torchmetrics features we computed once, so
    FID, KID and PRDC share one forward pass. `num_features` stops torchmetrics from
    probing the module with a 299x299 image."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats


@torch.no_grad()
def extract(net: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    device = next(net.parameters()).device
    return torch.cat([net.features(x[i:i + batch].to(device)).float().cpu()
                      for i in range(0, len(x), batch)])


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100,
            kid_subset_size: int = 1000) -> dict[str, float]:
    """FID and KID (mean and std over subsets) between two feature sets."""
    d = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d), normalize=False)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": small here
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(d), subsets=kid_subsets,
                                      subset_size=size, normalize=False)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(KID_SEED)
    try:
        kid_mean, kid_std = kid.compute()
    finally:
        torch.random.set_rng_state(state)
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x.double(), x.double())
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020, eqs. 1-4)."""
    real_r = _kth_neighbour_radius(real, k)
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


C2ST_SEED = 0
C2ST_FOLDS = 5


def c2st_accuracy(real: torch.Tensor, fake: torch.Tensor, seed: int = C2ST_SEED) -> float:
    """Classifier two-sample test (Lopez-Paz and Oquab 2017): the cross-validated held-out
    accuracy of a fresh logistic regression (scikit-learn) telling `fake` features from as
    many `real` ones. 0.5 means indistinguishable, 1.0 fully separable. Cheap enough
    (tens of milliseconds) to run at every pressure level."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    r = real[rng.permutation(len(real))[:n]].double().numpy()
    f = fake[rng.permutation(len(fake))[:n]].double().numpy()
    x, y = np.concatenate([r, f]), np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(min(C2ST_FOLDS, n), shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x, y, cv=folds).mean())
