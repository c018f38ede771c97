"""Fine-tuning a diffusion model against a frozen reward: the diffusion counterpart of
"freeze the discriminator, train the generator".

DRaFT-K (Clark et al. 2024, "Directly Fine-Tuning Diffusion Models on Differentiable
Rewards", sec. 4): sample with deterministic DDIM, backpropagate the reward through the
last K sampling steps only (the earlier ones run without a graph), and take an Adam step
on the model's weights. Chosen over DDPO (Black et al. 2024, policy gradient over the
sampling chain) because the proxy is differentiable: the reward's gradient is available
and DRaFT reaches a given reward in far fewer samples (Clark et al., Fig. 3), which is
what a CPU allows. K = 1 is DRaFT-1, their most sample-efficient variant.

Reward: the proxy's target log-probability for a classifier (the sample's own label),
log sigmoid D(x) for a discriminator. Optional penalty: `weight_l2` times the squared L2
distance of the weights from the original model's (a trust region in weight space; a KL
to the original sampler has no closed form for a deterministic DDIM chain).

Samples at each level: the fine-tuned model's conditional DDIM samples (w = 1) from fixed
x_T and balanced labels, so level 0 is the original model's."""
from __future__ import annotations

import copy
from typing import Iterator

import torch

from optbench.models.diffusion import to_pixels
from optbench.pressure.generator import parameter_distance
from optbench.proxies import Proxy, as_proxy


def conditional_eps(model, labels: torch.Tensor):
    """The model's conditional noise prediction, as ddim_sample calls it."""
    return lambda x, t: model(x, t, class_labels=labels).sample


def draft_finetune(model0: torch.nn.Module, proxy: Proxy | torch.nn.Module, x_T_eval: torch.Tensor,
                   labels_eval: torch.Tensor, levels: list[int], num_classes: int, lr: float = 1e-4,
                   batch_size: int = 16, grad_steps: int = 1, ddim_steps: int = 25, weight_l2: float = 0.0,
                   seed: int = 0, bounds=(0.0, 1.0), objective: str = "log_prob"
                   ) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Yield (fine-tune steps, samples of x_T_eval, info) at every level."""
    from optbench.pressure.guidance import ddim_sample, make_ddim
    proxy = as_proxy(proxy)
    model = copy.deepcopy(model0).eval().requires_grad_(True)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = make_ddim("none", getattr(model0, "scheduler_config", None))
    gen = torch.Generator().manual_seed(seed)
    device = x_T_eval.device

    def reward(x0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = to_pixels(x0, bounds)
        return proxy.score(proxy(x), labels if proxy.has_classes else None, objective)

    step, last_reward = 0, float("nan")
    for level in levels:
        while step < level:
            x_T = torch.randn((batch_size, *x_T_eval.shape[1:]), generator=gen).to(device)
            labels = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
            x0 = ddim_sample(conditional_eps(model, labels), x_T, scheduler, ddim_steps, "none", grad_steps)
            r = reward(x0, labels)
            loss = -r.mean()
            if weight_l2:
                loss = loss + weight_l2 * sum((p - start[n]).pow(2).sum() for n, p in model.named_parameters())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last_reward = float(r.detach().mean())
            step += 1
        with torch.no_grad():
            x0 = ddim_sample(conditional_eps(model, labels_eval), x_T_eval, scheduler, ddim_steps, "none", 0)
        yield step, to_pixels(x0, bounds), {"extras": {"param_l2": parameter_distance(model, start),
                                                       "train_reward": last_reward}}
