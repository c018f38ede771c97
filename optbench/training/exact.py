"""Shipping a ground-truth domain's exact models: nothing is trained, the modules hold
what defines the domain (a mixture's parameters, a renderer's noise level)."""
from __future__ import annotations

from optbench.domains import get_domain
from optbench.models.checkpoints import save_model
from optbench.training.vector import VERSIONS


def ship_exact_models(domain: str, root=None, log=print) -> dict:
    """The domain's exact models (`Domain.exact_models()`: name -> (module, arch_kwargs,
    notes)), such as a mixture's sampler, diffusion model and noisy posterior, shipped as
    safetensors of what defines them."""
    dom = get_domain(domain)
    entries = {}
    for name, (module, kwargs, notes) in dom.exact_models().items():
        entries[name] = save_model(module, domain, name, {
            "arch": type(module).__name__, "arch_kwargs": kwargs, "recipe": {"role": "exact model", "notes": notes},
            "versions": VERSIONS}, root=root)
        log(f"  {name}: shipped")
    return entries
