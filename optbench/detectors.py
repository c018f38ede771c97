"""Over-optimization detectors that need no gold: what the optimizer's owner can compute
from the proxy alone (its logits, features and input gradients), its training data, and
extra proxies trained on the same data. Each is a per-sample score, higher = more
suspicious; issue 16 grades them against the gold referees.

    energy            -logsumexp of the logits (Liu et al. 2020, "Energy-based
                      out-of-distribution detection", eq. 4 with T = 1)
    max_logit         minus the largest logit (Hendrycks et al. 2022, "Scaling
                      out-of-distribution detection for real-world settings")
    grad_norm         ||d log p(target | x) / dx||_2: how steep the proxy is where the
                      output sits
    mahalanobis       min over classes of the squared Mahalanobis distance of the
                      penultimate features to the class mean, with one covariance shared
                      by the classes (Lee et al. 2018, "A simple unified framework for
                      detecting out-of-distribution samples", eq. 2)
    disagreement      the standard deviation, over an ensemble of proxies trained on the
                      same data, of the target log-probability (Coste et al. 2023,
                      "Reward model ensembles help mitigate overoptimization")
"""
from __future__ import annotations

import torch


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -log sum_c exp f_c(x); in-distribution inputs have low energy."""
    return -torch.logsumexp(logits.double(), dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return -logits.double().amax(1)


def grad_norm(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of the input gradient of the target's log-probability. The model
    runs in eval mode (batch norm in training mode would mix the samples of a batch)."""
    x = x.detach().clone().requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logp = model(x).log_softmax(1).gather(1, target[:, None].to(x.device)).sum()
            (g,) = torch.autograd.grad(logp, x)
    finally:
        model.train(was_training)
    return g.flatten(1).double().norm(dim=1).cpu()


class ClassGaussians:
    """Class means and one shared covariance of features (Lee et al. 2018): the
    generative classifier a softmax classifier's penultimate layer implies."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, ridge: float = 1e-6):
        f = features.double()
        classes = labels.unique()
        self.means = torch.stack([f[labels == c].mean(0) for c in classes])
        centred = f - self.means[torch.searchsorted(classes, labels)]
        cov = centred.T @ centred / len(f)
        # A ridge relative to the mean variance keeps the inverse finite when features
        # are rank-deficient (ReLU units that never fire on the training data).
        cov += ridge * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        self.precision = torch.linalg.inv(cov)

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, classes) squared Mahalanobis distances to every class mean."""
        d = features.double()[:, None, :] - self.means[None]
        return torch.einsum("ncd,de,nce->nc", d, self.precision, d)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """min over classes: the distance to the nearest class."""
        return self.distances(features).amin(1)


def disagreement(member_logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Standard deviation over ensemble members of the target's log-probability (0 when
    the members agree; population std, so one member gives 0)."""
    logp = torch.stack([m.double().log_softmax(1).gather(1, target[:, None]).squeeze(1) for m in member_logits])
    return logp.std(0, correction=0)
