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
x_T and balanced labels, so level 0 is the original model's. For exact equal-proxy
points the same samples are drawn after every fine-tune step and read by the proxy
(a measurement: no gradient, no random draw, so the levels' samples are unchanged)."""
from __future__ import annotations

import copy
from typing import Iterator

import torch

from optbench.models.diffusion import to_pixels
from optbench.models.fixed_batch import map_fixed
from optbench.pressure.generator import parameter_distance
from optbench.pressure.guidance import initial_noise
from optbench.pressure.pixel_ascent import OBJECTIVES
from optbench.pressure.source import MAX_LR, TIMESTEPS, Context, Level, Setting, Source, Trajectory
from optbench.proxies import as_proxy


def conditional_eps(model, labels: torch.Tensor):
    """The model's conditional noise prediction, as ddim_sample calls it."""
    return lambda x, t: model(x, t, class_labels=labels).sample


def draft_finetune(ctx: Context, model0: torch.nn.Module, x_T_eval: torch.Tensor, labels_eval: torch.Tensor,
                   levels: list[int], s: dict) -> Iterator[Level]:
    """Yield a Level (fine-tune steps, samples of x_T_eval, the weights' distance
    param_l2 and the last train_reward) at every level, with DIFFUSION_FINETUNE's
    settings `s`. `ctx.crossings` observes the proxy's probability of the x_T_eval
    samples after every step."""
    from optbench.pressure.guidance import ddim_sample, make_ddim
    proxy, crossings, bounds, objective = as_proxy(ctx.proxy), ctx.crossings, ctx.bounds, s["objective"]
    batch_size, grad_steps, ddim_steps, weight_l2 = s["batch_size"], s["grad_steps"], s["ddim_steps"], s["weight_l2"]
    model = copy.deepcopy(model0).eval().requires_grad_(True)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
    scheduler = make_ddim("none", getattr(model0, "scheduler_config", None))
    gen = torch.Generator().manual_seed(ctx.seed)
    device = x_T_eval.device
    num_classes = ctx.domain.num_classes

    def reward(x0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = to_pixels(x0, bounds)
        return proxy.score(proxy(x), labels if proxy.has_classes else None, objective)

    def samples() -> torch.Tensor:   # x_T_eval's samples under the current weights
        with torch.no_grad():
            x0 = ddim_sample(conditional_eps(model, labels_eval), x_T_eval, scheduler, ddim_steps, "none", 0)
        return to_pixels(x0, bounds)

    def record(step: int, x: torch.Tensor) -> None:
        with torch.no_grad():
            prob = map_fixed(lambda xc, tc: proxy.score_and_prob(xc, tc, objective)[1], x, labels_eval)
        crossings.update(step, prob, lambda mask: x[mask.to(x.device)])

    step, last_reward, last = 0, float("nan"), None
    for level in levels:
        while step < level:
            if crossings is not None:   # the level just yielded holds this step's samples
                record(step, last[1] if last is not None and last[0] == step else samples())
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
        last = (step, samples())
        if step == levels[-1] and crossings is not None:
            record(step, last[1])
        yield Level(step, last[1], values={"param_l2": parameter_distance(model, start), "train_reward": last_reward})


def run(ctx: Context, s: dict) -> Trajectory:
    model = ctx.model(s["generator"])
    labels = (torch.arange(ctx.n) % ctx.domain.num_classes).to(ctx.device)
    x_T = initial_noise(ctx.n, ctx.seed, ctx.domain.shape).to(ctx.device)
    levels = draft_finetune(ctx, model, x_T, labels, ctx.step_levels(s["max_steps"]), s)
    first = next(levels).cpu()

    def all_levels():   # level 0 is the original model's samples: the start
        yield first
        for level in levels:
            yield level.cpu()
    return Trajectory(first.x, labels.cpu(), all_levels())


DIFFUSION_FINETUNE = Source(
    name="diffusion_finetune",
    knob="steps",
    pressure="fine-tune steps",
    doc="DRaFT-K: fine-tune the diffusion model's weights to raise the frozen proxy's reward "
        "(its target log-probability; log sigmoid D for a discriminator), backpropagating "
        "through the last K DDIM steps; samples are the model's conditional ones (w = 1)",
    run=run,
    iterative=True,
    settings={
        "generator": Setting(str, "diffusion_unet", doc="the domain's diffusion model (trainable: not an exact one)"),
        "lr": Setting(float, 1e-4, minimum=1e-12, maximum=MAX_LR, doc="Adam step size on the weights"),
        "max_steps": Setting(int, 64, minimum=1, maximum=2**16, doc="last level; levels are 0, 1, 2, 4, ..."),
        "batch_size": Setting(int, 16, minimum=1, maximum=2**16, doc="samples per fine-tune step"),
        "grad_steps": Setting(int, 1, minimum=1, maximum=TIMESTEPS, doc="K: DDIM steps the reward is backpropagated through"),
        "ddim_steps": Setting(int, 25, minimum=1, maximum=TIMESTEPS, doc="DDIM sampling steps, in training and for the outputs"),
        "weight_l2": Setting(float, 0.0, minimum=0.0, doc="penalty on the squared L2 distance of the weights "
                             "from the original model's"),
        "objective": Setting(str, "log_prob", OBJECTIVES, doc="the reward: log-probability (log sigmoid for D) or logit"),
    },
    values={"param_l2": "L2 norm of the change in the model's weights (the source's distance d)",
            "train_reward": "mean reward of the last fine-tune batch"},
    check=lambda s, dom: ("grad_steps: must be <= ddim_steps" if s["grad_steps"] > s["ddim_steps"] else None),
    models=lambda s: (s["generator"],),
    distance="param_l2",
    queries=lambda s, k, n: (k * s["batch_size"] / n, k * s["batch_size"] / n),
)
