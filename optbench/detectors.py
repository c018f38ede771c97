"""Over-optimization detectors that need no gold: what the optimizer's owner can compute
from the proxy alone (its logits, features and input gradients), its training data, and
extra proxies trained on the same data. Each is a per-sample score, higher = more
suspicious; issue 16 grades them against the gold referees.

    energy            -logsumexp of the logits (Liu et al. 2020, "Energy-based
                      out-of-distribution detection", eq. 4 with T = 1)
    max_logit         minus the largest logit (Hendrycks et al. 2022, "Scaling
                      out-of-distribution detection for real-world settings")
    grad_norm         ||d log p(y^ | x) / dx||_2, y^ the proxy's class at x: how steep
                      the proxy is where the output sits
    mahalanobis       min over classes of the squared Mahalanobis distance of the
                      penultimate features to the class mean, with one covariance shared
                      by the classes (Lee et al. 2018, "A simple unified framework for
                      detecting out-of-distribution samples", eq. 2)
    disagreement      the standard deviation, over an ensemble of proxies trained on the
                      same data, of the log-probability of the ensemble's class (Coste
                      et al. 2023,
                      "Reward model ensembles help mitigate overoptimization")
    typicality        |log p(x) - the median log p of held-out real data| under an
                      independent density model trained on the proxy's training split
                      (optbench/density.py). Two-sided, a typicality test rather than a
                      likelihood threshold: bright or simple images can have a higher
                      likelihood than real data (Nalisnick et al. 2019, "Do deep generative
                      models know what they don't know?"; Nalisnick et al. 2019,
                      "Detecting out-of-distribution inputs to deep generative models
                      using typicality").

`ProxySide` fits what they need once per proxy (on its training split) and calibrates
each on real data that no start, real baseline, null, proxy or generator draws from
(`calibration_split`: the domain's judge_train split, which only the judges and feature
networks were trained on): an output is flagged when its score is above the k-th
smallest of the m calibration scores, k = ceil(0.99 (m + 1)), so a fresh real example is
flagged with probability 1% on average (Beta(m + 1 - k, k) over calibration draws;
metrics.threshold_rank). Every detector is blind to the target:
with the target's log-probability, a real start of another class reads as suspicious
before any optimization (a trial flagged every pixel-ascent start on gmm2).
"""
from __future__ import annotations

import math
import weakref

import torch


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -log sum_c exp f_c(x); in-distribution inputs have low energy."""
    return -torch.logsumexp(logits.double(), dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return -logits.double().amax(1)


def input_grad_norm(model: torch.nn.Module, x: torch.Tensor, score) -> torch.Tensor:
    """Per-sample L2 norm of d score(model(x)).sum() / dx. The model runs in eval mode
    (batch norm in training mode would mix the samples of a batch)."""
    x = x.detach().clone().requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(score(model(x)).sum(), x)
    finally:
        model.train(was_training)
    return g.flatten(1).double().norm(dim=1).cpu()


def grad_norm(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The input-gradient norm of a classifier's target log-probability."""
    return input_grad_norm(model, x, lambda out: out.log_softmax(1).gather(1, target[:, None].to(out.device)))


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


DETECTORS = ("energy", "max_logit", "grad_norm", "mahalanobis", "disagreement", "typicality")
CLASS_DETECTORS = ("energy", "max_logit", "mahalanobis", "disagreement")   # need class logits
ENSEMBLE_REPLICATES = (100, 101, 102)   # extra proxies: replicates of the proxy's recipe
FLAG_RATE = 0.01                  # share of held-out real data each detector flags
# Real data the thresholds are calibrated on, in order of preference: never the test
# split (the starts, the real baseline, half the null pool), the reference split (the
# referees' reference), generator_train (the generators' data, the null pool's other
# half) or proxy_train (the proxy's and the detectors' own fits).
CALIBRATION_SPLITS = ("judge_train",)


def calibration_split(dom) -> str:
    """The first of CALIBRATION_SPLITS the domain declares."""
    split = next((s for s in CALIBRATION_SPLITS if s in dom.splits), None)
    if split is None:
        from optbench.errors import DomainError
        raise DomainError(f"domain {dom.name!r}: splits: detectors calibrate on {' or '.join(CALIBRATION_SPLITS)}, "
                          "which it does not declare; add a judge_train split")
    return split


def calibration_size(domain: str) -> int:
    """m, the number of real examples each detector's threshold is calibrated on."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    return dom.split_sizes()[calibration_split(dom)]


def calibrated_threshold(scores: torch.Tensor) -> float:
    """The k-th smallest of the m scores, k = threshold_rank(m, FLAG_RATE), a non-finite
    score counting as the most suspicious (so m is the split's size, as the null's);
    NaN when no score is finite (the detector does not apply)."""
    from optbench.metrics import threshold_rank
    if not torch.isfinite(scores).any():
        return math.nan
    v = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, math.inf)).sort().values
    return float(v[threshold_rank(len(v), FLAG_RATE) - 1])


def confidence_grad_norm(proxy, x: torch.Tensor) -> torch.Tensor:
    """grad_norm of any proxy kind, blind to the target: the input gradient of log p(y^ | x)
    with y^ the proxy's class at x (log sigmoid D(x) for a discriminator)."""
    x = x.to(proxy.device)
    if proxy.kind == "classifier":
        return input_grad_norm(proxy.model, x, lambda out: out.log_softmax(1).amax(1))
    return input_grad_norm(proxy.model, x, lambda out: proxy.score(out, None, "log_prob"))


class ProxySide:
    """Every detector for one proxy on one domain: fitted on the proxy's training split,
    calibrated on held-out real data. `proxy` is the cell's Proxy; `name` its catalog name
    (for the ensemble's replicates; "" when it has no recipe: no disagreement)."""

    def __init__(self, domain: str, proxy, name: str = ""):
        from optbench.density import domain_density
        from optbench.domains import get_domain
        from optbench.referees.distribution import extract
        dom = get_domain(domain)
        self.proxy, self.classes = proxy, proxy.kind == "classifier"
        self.names = tuple(d for d in DETECTORS if self.classes or d not in CLASS_DETECTORS)
        x_fit, y_fit = dom.load_split("proxy_train")
        self.gaussians = None
        if self.classes and hasattr(proxy.model, "features"):
            self.gaussians = ClassGaussians(extract(proxy.model, x_fit), y_fit)
        self.members = self._members(domain, name) if self.classes else []
        self.density = domain_density(domain, device=proxy.device)
        x_cal, _ = dom.load_split(calibration_split(dom))
        # The typical log-density of held-out real data (the flow overfits its own). Taken
        # on the calibration split itself, which shifts the threshold's law by O(1/m).
        with torch.no_grad():
            self.centre = float(self.density.log_prob(x_cal.to(proxy.device)).median())
        cal = self.scores(x_cal)
        self.thresholds = {k: calibrated_threshold(v) for k, v in cal.items()}

    def _members(self, domain: str, name: str) -> list[torch.nn.Module]:
        from optbench.errors import CheckpointError
        from optbench.training.replicates import load_replicate
        if not name:
            return []
        try:
            return [load_replicate(domain, name, r, self.proxy.device)[0] for r in ENSEMBLE_REPLICATES]
        except CheckpointError:   # no recipe: a user's proxy, or a GAN's discriminator
            return []

    @torch.no_grad()
    def scores(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample scores of every detector, higher = more suspicious (CPU, float64)."""
        from optbench.referees.classifiers import logits_of
        from optbench.referees.distribution import extract
        out = {}
        if self.classes:
            logits = (logits_of(self.proxy.model, x) if logits is None else logits).double().cpu()
            out["energy"], out["max_logit"] = energy(logits), max_logit(logits)
            nan = torch.full((len(x),), math.nan, dtype=torch.float64)
            out["mahalanobis"] = self.gaussians.score(extract(self.proxy.model, x)).cpu() if self.gaussians else nan
            if self.members:
                members = [logits, *(logits_of(m, x).double().cpu() for m in self.members)]
                agreed = torch.stack([m.softmax(1) for m in members]).mean(0).argmax(1)
                out["disagreement"] = disagreement(members, agreed)
            else:
                out["disagreement"] = nan
        out["grad_norm"] = confidence_grad_norm(self.proxy, x)
        lp = self.density.log_prob(x.to(self.proxy.device)).double().cpu()
        out["typicality"] = (lp - self.centre).abs()
        return out

    def flagged(self, scores: dict[str, torch.Tensor]) -> dict[str, float]:
        """Share of samples above each detector's calibrated threshold (NaN: undefined)."""
        return {k: float((v > self.thresholds[k]).double().mean()) if math.isfinite(self.thresholds[k])
                else math.nan for k, v in scores.items()}


_FITTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def proxy_side(domain: str, proxy, name: str = "") -> ProxySide:
    """The ProxySide of a proxy's model, fitted once while the model lives."""
    fitted = _FITTED.get(proxy.model)
    if fitted is None or fitted[0] != domain:
        fitted = (domain, ProxySide(domain, proxy, name))
        _FITTED[proxy.model] = fitted
    return fitted[1]
