"""The exact models of a Gaussian-mixture domain as modules, so the pressure sources use
them as they use learned ones; their tensors (the mixture) are shipped as safetensors.

MixtureSampler   z (d + 1) -> x: the last latent picks the component through the normal
                 CDF, the first d are whitened coordinates (x = mu_k + L_k z). Exact
                 sampling, so best-of-n on it departs by selection alone.
ExactDiffusion   the ideal noise predictor of the noised mixture, class-conditional
                 (label num_classes = unconditional), with the UNet's calling convention:
                 a diffusion model with no network error.
ExactNoisyPosterior  log p_t(y | x_t): the exact noise-aware classifier."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from optbench.gold.gmm import GaussianMixture


def _alphas_cumprod(config: dict) -> torch.Tensor:
    from diffusers import DDPMScheduler
    return DDPMScheduler(**config).alphas_cumprod.double()


class _MixtureModule(nn.Module):
    proxy_kind = None

    def __init__(self, dim: int = 2, components: int = 8, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("weights", torch.full((components,), 1.0 / components, dtype=torch.float64))
        self.register_buffer("means", torch.zeros(components, dim, dtype=torch.float64))
        self.register_buffer("covs", torch.eye(dim, dtype=torch.float64).repeat(components, 1, 1))
        self.register_buffer("classes", torch.arange(components) % num_classes)

    @classmethod
    def of(cls, mixture: GaussianMixture, **kwargs) -> "_MixtureModule":
        m = cls(mixture.dim, len(mixture.weights), mixture.num_classes, **kwargs)
        m.load_state_dict({**m.state_dict(), **mixture.tensors()})
        m.init_from_mixture()
        return m

    def init_from_mixture(self) -> None:
        """Set anything derived from the mixture's tensors (nothing, but for the sampler)."""

    def mixture(self) -> GaussianMixture:
        return GaussianMixture(self.weights, self.means, self.covs, self.classes, self.num_classes)


class MixtureSampler(_MixtureModule):
    def __init__(self, dim: int = 2, components: int = 8, num_classes: int = 4):
        super().__init__(dim, components, num_classes)
        self.latent_dim = dim + 1
        # Trainable copies, so generator fine-tuning has weights to move.
        self.loc = nn.Parameter(torch.zeros(components, dim))
        self.scale_tril = nn.Parameter(torch.eye(dim).repeat(components, 1, 1))

    def init_from_mixture(self) -> None:
        with torch.no_grad():   # the sampler's own parameters start at the mixture's
            self.loc.copy_(self.means.float())
            self.scale_tril.copy_(torch.linalg.cholesky(self.covs).float())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = torch.special.ndtr(z[:, -1].double())
        k = torch.searchsorted(self.weights.cumsum(0).contiguous(), u.contiguous()).clamp(max=len(self.weights) - 1)
        white = z[:, :-1]
        return self.loc[k] + torch.einsum("nij,nj->ni", self.scale_tril[k], white)


class ExactDiffusion(_MixtureModule):
    def __init__(self, dim: int = 2, components: int = 8, num_classes: int = 4,
                 scheduler_config: dict | None = None):
        super().__init__(dim, components, num_classes)
        from optbench.models.diffusion import SCHEDULER_CONFIG
        self.scheduler_config = dict(scheduler_config or SCHEDULER_CONFIG)
        self.config = SimpleNamespace(num_class_embeds=num_classes + 1)
        self.alphas_cumprod = _alphas_cumprod(self.scheduler_config)

    def forward(self, x: torch.Tensor, t, class_labels: torch.Tensor | None = None):
        abar = float(self.alphas_cumprod[int(t)])
        mix = self.mixture()
        if class_labels is None:
            return SimpleNamespace(sample=mix.ideal_eps(x, abar).to(x.dtype))
        eps = torch.empty(x.shape, dtype=torch.float64, device=x.device)
        null = class_labels == self.num_classes
        if null.any():
            eps[null] = mix.ideal_eps(x[null], abar)
        if (~null).any():
            eps[~null] = mix.ideal_eps(x[~null], abar, class_labels[~null])
        return SimpleNamespace(sample=eps.to(x.dtype))


class ExactNoisyPosterior(_MixtureModule):
    """forward(x_t, t) -> log p_t(y | x_t), the logits of the exact noisy classifier."""

    def __init__(self, dim: int = 2, components: int = 8, num_classes: int = 4,
                 scheduler_config: dict | None = None):
        super().__init__(dim, components, num_classes)
        from optbench.models.diffusion import SCHEDULER_CONFIG
        self.alphas_cumprod = _alphas_cumprod(dict(scheduler_config or SCHEDULER_CONFIG))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = float(self.alphas_cumprod[int(torch.as_tensor(t).reshape(-1)[0])])
        return self.mixture().noised(abar).class_log_posterior(x).to(x.dtype)


class BayesClassifier(_MixtureModule):
    """forward(x) -> log p(y | x): the gold judge (never a proxy or judge of its domain)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixture().class_log_posterior(x).to(x.dtype)


def mixture_in_model_range(dom):
    """The domain's mixture in the diffusion models' [-1, 1] coordinates (None if it has
    none). Only bounds (-1, 1) are identical to that range; others would need an affine
    map of the mixture, which the exact models do not implement."""
    mixture = getattr(dom, "mixture", None)
    if mixture is None:
        return None
    if tuple(dom.bounds) != (-1.0, 1.0):
        raise ValueError(f"domain {dom.name!r}: bounds: the exact diffusion model needs (-1, 1), got {dom.bounds}")
    return mixture
