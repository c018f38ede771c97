"""A Gaussian mixture whose every quantity is exact: log-density, score, class
posterior, sampling, and the same for the mixture noised to any diffusion time.

Components k have weight pi_k, mean mu_k, covariance Sigma_k and a class c_k (a class is
one component or a group of them). With N_k(x) = N(x; mu_k, Sigma_k):

    log p(x)        = logsumexp_k (log pi_k + log N_k(x))
    r_k(x)          = pi_k N_k(x) / p(x)                        (responsibilities)
    grad log p(x)   = sum_k r_k(x) Sigma_k^-1 (mu_k - x)
    p(y | x)        = sum_{k: c_k = y} r_k(x)                   (the Bayes posterior)

Noising by the variance-preserving forward process x_t = sqrt(abar) x_0 + sqrt(1 - abar)
eps (Ho et al. 2020, eq. 4) keeps it a mixture with the same weights:
    mu_k(t) = sqrt(abar) mu_k,   Sigma_k(t) = abar Sigma_k + (1 - abar) I,
so the noised score, and with it the ideal noise prediction
eps*(x_t) = -sqrt(1 - abar) grad log p_t(x_t) (Tweedie; Song et al. 2021, eq. 7 with
sigma^2 = 1 - abar), is closed form at every t. Written here because no well-kept
library gives a mixture's score or its noised form (scipy and sklearn give the density).
Everything is float64."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from optbench.gold import ExactReferee


@dataclass(frozen=True)
class GaussianMixture:
    weights: torch.Tensor      # (K,) summing to 1
    means: torch.Tensor        # (K, d)
    covs: torch.Tensor         # (K, d, d), positive definite
    classes: torch.Tensor      # (K,) class of each component, 0..C-1
    num_classes: int

    def __post_init__(self):
        for name in ("weights", "means", "covs"):
            object.__setattr__(self, name, getattr(self, name).double())
        object.__setattr__(self, "classes", self.classes.long())
        object.__setattr__(self, "_chol", torch.linalg.cholesky(self.covs))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # -- densities -------------------------------------------------------------------
    def whitened(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, d): L_k^-1 (x - mu_k) for every component (L_k L_k^T = Sigma_k), one
        triangular solve per component (broadcasting L over N would copy it N times)."""
        x = x.double().reshape(len(x), -1)
        return torch.stack([torch.linalg.solve_triangular(L, (x - mu).T, upper=False).T
                            for L, mu in zip(self._chol, self.means)], 1)

    def component_log_pdf(self, x: torch.Tensor, white: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K): log N_k(x) for every component (white: whitened(x), if already known)."""
        white = self.whitened(x) if white is None else white
        log_det = 2 * self._chol.diagonal(dim1=1, dim2=2).log().sum(1)
        return -0.5 * (white.pow(2).sum(-1) + log_det + self.dim * math.log(2 * math.pi))

    def _joint(self, x: torch.Tensor, y: torch.Tensor | int | None = None,
               white: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K): log pi_k + log N_k(x), with components of classes other than y (one
        class per row, or one for all) at -inf and the class's weights renormalized."""
        log_w = self.weights.log()
        joint = self.component_log_pdf(x, white) + log_w
        if y is None:
            return joint
        y = torch.as_tensor(y).long().reshape(-1, 1)
        keep = self.classes[None] == y                                # (N or 1, K)
        class_mass = torch.where(keep, log_w, -math.inf).logsumexp(1, keepdim=True)
        return torch.where(keep, joint - class_mass, -math.inf)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """log p(x), or log p(x | y) given classes y."""
        return self._joint(x, y).logsumexp(1)

    def responsibilities(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self._joint(x, y).softmax(1)

    def score(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """grad_x log p(x) (or log p(x | y)), (N, d)."""
        x = x.double().reshape(len(x), -1)
        r = self.responsibilities(x, y)                                # (N, K)
        out = torch.zeros_like(x)
        for k, (L, mu) in enumerate(zip(self._chol, self.means)):     # Sigma_k^-1 (mu_k - x)
            out += r[:, k:k + 1] * torch.cholesky_solve((mu - x).T, L).T
        return out

    def class_posterior(self, x: torch.Tensor, white: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C): p(y | x), the Bayes posterior."""
        r = self._joint(x, white=white).softmax(1)
        out = torch.zeros(len(r), self.num_classes, dtype=r.dtype, device=r.device)
        return out.index_add_(1, self.classes, r)

    def class_log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C): log p(y | x), computed in log space (exact far from the data too)."""
        joint = self._joint(x)
        out = torch.full((len(joint), self.num_classes), -math.inf, dtype=joint.dtype, device=joint.device)
        for c in range(self.num_classes):
            out[:, c] = joint[:, self.classes == c].logsumexp(1)
        return out - joint.logsumexp(1, keepdim=True)

    def mahalanobis(self, x: torch.Tensor) -> torch.Tensor:
        """(N,): the Mahalanobis distance to the nearest component, min_k
        sqrt((x - mu_k)^T Sigma_k^-1 (x - mu_k))."""
        return self.whitened(x).pow(2).sum(-1).amin(1).sqrt()

    # -- sampling ----------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator, y: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n draws (x, class, component) with numpy's Generator (the same stream on every
        platform); y: from class y's components only."""
        w = self.weights.numpy()
        if y is not None:
            w = np.where(self.classes.numpy() == y, w, 0.0)
        comp = rng.choice(len(w), size=n, p=w / w.sum())
        z = rng.standard_normal((n, self.dim))
        chol, means = self._chol.numpy(), self.means.numpy()
        x = np.empty_like(z)
        for k in np.unique(comp):      # per component: gathering (n, d, d) factors would not fit
            rows = comp == k
            x[rows] = means[k] + np.einsum("ij,nj->ni", chol[k], z[rows])
        return x, self.classes.numpy()[comp], comp

    # -- diffusion -------------------------------------------------------------------
    def noised(self, alpha_bar: float) -> "GaussianMixture":
        """The law of x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps for x_0 from this mixture."""
        a = float(alpha_bar)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, math.sqrt(a) * self.means, a * self.covs + (1 - a) * eye,
                               self.classes, self.num_classes)

    def ideal_eps(self, x_t: torch.Tensor, alpha_bar: float, y=None) -> torch.Tensor:
        """The exact noise prediction E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t)."""
        return -math.sqrt(1 - float(alpha_bar)) * self.noised(alpha_bar).score(x_t, y)

    # -- storage -------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "covs": self.covs, "classes": self.classes}


def random_mixture(dim: int, num_classes: int, per_class: int, rank: int, seed: int,
                   mean_scale: float, spread: tuple[float, float], floor: float,
                   min_separation: float = 0.0) -> GaussianMixture:
    """A seeded mixture: num_classes x per_class equal-weight components. Each covariance
    is A A^T + floor^2 I with A = Q diag(s), Q orthonormal d x rank and s uniform in
    `spread`: a component is a thin slab around a rank-dimensional affine subspace (the
    data's "manifold") when rank < dim. Means are uniform in [-mean_scale, mean_scale]^d,
    redrawn until every pair is at least min_separation apart."""
    rng = np.random.default_rng(seed)
    k = num_classes * per_class
    for _ in range(10_000):
        means = rng.uniform(-mean_scale, mean_scale, (k, dim))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1) + np.eye(k) * 1e9
        if gaps.min() >= min_separation:
            break
    else:
        raise ValueError("min_separation: no mixture found with means this far apart")
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
        a = q * rng.uniform(*spread, rank)
        covs.append(a @ a.T + floor ** 2 * np.eye(dim))
    classes = np.repeat(np.arange(num_classes), per_class)
    return GaussianMixture(torch.full((k,), 1.0 / k), torch.from_numpy(means), torch.from_numpy(np.stack(covs)),
                           torch.from_numpy(classes), num_classes)


class MixtureReferee(ExactReferee):
    """The exact referee of a Gaussian-mixture domain (optbench/gold/__init__.py).

    gold_prob, gold_hit, gold_conf: the Bayes posterior's target probability, whether its
        class is the target, its top-class probability (the perfect judge).
    gold_logp_q: where log p(x) falls among the log-densities of real samples, as a
        quantile (0.5 on average for real data). A raw log-likelihood would mislead: a
        point at a mode has the highest density of all, yet no real sample sits there
        in high dimension (the typical set).
    gold_atypical: share of outputs outside the central 99% of real log-densities, on
        either side (0.01 for real data): the per-sample typicality test.
    gold_ks: Kolmogorov-Smirnov statistic of the outputs' quantiles against the uniform
        law they follow on real data: the batch's typicality test.
    gold_maha: Mahalanobis distance to the nearest component (about sqrt(d) on data).
    gold_value: the target's posterior for a typical output, 0 for an atypical one: what
        an output is worth to someone who asked for a real-looking example of the target
        (the gold score of the detectors' stopping rule, optbench/report/detectors.py)."""

    names = ("gold_prob", "gold_hit", "gold_conf", "gold_logp_q", "gold_atypical", "gold_maha", "gold_value",
             "gold_ks")
    set_names = ("gold_ks",)
    TAIL = 0.005          # each side of the typicality test
    TYPICAL_DRAWS = 200_000

    def __init__(self, mixture: GaussianMixture, seed: int = 0):
        self.mixture, self.seed = mixture, seed
        x, _, _ = mixture.sample(self.TYPICAL_DRAWS, np.random.default_rng([seed, 7]))
        self.real_logp = np.sort(mixture.log_prob(torch.from_numpy(x)).numpy())
        self.bounds = np.quantile(self.real_logp, [self.TAIL, 1 - self.TAIL])

    def identity(self) -> dict:
        m = self.mixture
        digest = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in m.tensors().values()))
        return {"mixture": digest.hexdigest()[:16], "seed": self.seed, "tail": self.TAIL,
                "typical_draws": self.TYPICAL_DRAWS}

    def logp_quantile(self, x: torch.Tensor, lp: torch.Tensor | None = None) -> torch.Tensor:
        lp = (self.mixture.log_prob(x) if lp is None else lp).numpy()
        return torch.from_numpy(np.searchsorted(self.real_logp, lp, side="right") / len(self.real_logp))

    def per_sample(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        white = self.mixture.whitened(x)         # once: it is most of the cost in d = 64
        post = self.mixture.class_posterior(x, white)
        lp = self.mixture._joint(x, white=white).logsumexp(1)
        q = self.logp_quantile(x, lp)
        lo, hi = self.bounds
        typical = (lp >= lo) & (lp <= hi)
        prob = post.gather(1, target.long().cpu()[:, None]).squeeze(1)
        return {"gold_prob": prob,
                "gold_hit": (post.argmax(1) == target.cpu()).double(),
                "gold_conf": post.amax(1),
                "gold_logp_q": q,
                "gold_atypical": (~typical).double(),
                "gold_maha": white.pow(2).sum(-1).amin(1).sqrt(),
                "gold_value": prob * typical}

    def set_metrics(self, x: torch.Tensor) -> dict[str, float]:
        from scipy.stats import kstest
        if len(x) == 0:
            return {"gold_ks": float("nan")}
        return {"gold_ks": float(kstest(self.logp_quantile(x).numpy(), "uniform").statistic)}

    def sample_true(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.mixture.sample(n, rng)
        return torch.from_numpy(x).float(), torch.from_numpy(y)


