"""Training the models of a plain-vector domain besides its classifiers: the raw
coordinate feature space, an MLP GAN and a learned diffusion model; and, for a
Gaussian-mixture domain, shipping its exact models (sampler, diffusion, noisy posterior)
as safetensors of the mixture."""
from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F

from optbench.domains import get_domain
from optbench.metrics import with_role
from optbench.models.checkpoints import save_model

VERSIONS = {"torch": torch.__version__, "python": platform.python_version()}
VECTOR_GAN = {"split": "generator_train", "steps": 6000, "batch_size": 128, "lr": 2e-4, "betas": (0.5, 0.999),
              "seed": 31, "ema_decay": 0.999, "latent_dim": 16, "hidden": 128, "shift": 0}
DENOISER = {"split": "generator_train", "steps": 12000, "batch_size": 256, "lr": 1e-3, "seed": 32,
            "hidden": 256, "p_uncond": 0.1}


def train_coords_checkpoint(domain: str, root=None, log=print) -> dict:
    """The raw-coordinate feature space, standardized on judge_train."""
    from optbench.models.vector import Coordinates
    dom = get_domain(domain)
    x, _ = dom.load_split("judge_train")
    model = Coordinates(dom.shape[0])
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0).clamp_min(1e-6))
    return save_model(model, domain, "coords", {
        "arch": "Coordinates", "arch_kwargs": {"dim": dom.shape[0]},
        "recipe": {"role": "feature net", "split": "judge_train",
                   "notes": "raw coordinates, standardized per coordinate"}, "versions": VERSIONS}, root=root)


def train_vector_gan_checkpoint(domain: str, root=None, log=print) -> dict:
    """Non-saturating GAN (Goodfellow et al. 2014) of MLPs; ships gan_generator (EMA
    weights) and gan_discriminator, with the exact mean log-density quantile of its
    samples when the domain has an exact referee."""
    from optbench.models.gan import generate, sample_latents
    from optbench.models.vector import MLPDiscriminator, MLPGenerator
    from optbench.training.gan import train_gan
    dom, r = get_domain(domain), VECTOR_GAN
    x, _ = dom.load_split(r["split"])
    g_kwargs = {"latent_dim": r["latent_dim"], "hidden": r["hidden"], "out_shape": list(dom.shape),
                "bounds": list(dom.bounds)}
    d_kwargs = {"hidden": r["hidden"], "in_shape": list(dom.shape), "bounds": list(dom.bounds)}
    G_ema, D, record = train_gan(x, r, log, build=lambda: (MLPGenerator(**g_kwargs), MLPDiscriminator(**d_kwargs)))
    quality = {}
    if dom.gold() is not None:
        fake = generate(G_ema, sample_latents(2000, 0, r["latent_dim"]))
        target = torch.zeros(len(fake), dtype=torch.long)
        departing_gold = {m.name for m in with_role("gold") if m.departs and m.kind == "sample"}
        quality = {k: round(float(v.double().mean()), 4) for k, v in dom.gold().per_sample(fake, target).items()
                   if k in departing_gold}
        log(f"  gan samples, exact referee: {quality}")
    common = {"recipe": r, "train_seconds": record["seconds"], "loss_curve": record["losses"],
              "versions": VERSIONS}
    entry = save_model(G_ema, domain, "gan_generator", {"arch": "MLPGenerator", "arch_kwargs": g_kwargs,
                                                         "gold_2000": quality, **common}, root=root)
    save_model(D, domain, "gan_discriminator", {"arch": "MLPDiscriminator", "arch_kwargs": d_kwargs, **common},
               root=root)
    return entry


def train_denoiser_checkpoint(domain: str, root=None, log=print) -> dict:
    """A class-conditional MLP noise predictor (DDPM loss, Ho et al. 2020, eq. 14) with
    label dropout for classifier-free guidance; data mapped from the domain's bounds to
    [-1, 1] as the image UNet's are. Its test loss is recorded beside the exact model's
    (the irreducible part of the loss) when the domain has one."""
    from diffusers import DDPMScheduler

    from optbench.models.diffusion import SCHEDULER_CONFIG, to_model_range
    from optbench.models.vector import MLPDenoiser
    dom, r = get_domain(domain), DENOISER
    x, y = dom.load_split(r["split"])
    x = to_model_range(x, dom.bounds)
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    sched = DDPMScheduler(**SCHEDULER_CONFIG)
    kwargs = {"dim": dom.shape[0], "num_classes": dom.num_classes, "hidden": r["hidden"]}
    model = MLPDenoiser(**kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, r["steps"])
    t0 = time.time()
    for step in range(r["steps"]):
        idx = torch.randint(0, len(x), (r["batch_size"],), generator=gen)
        x0, labels = x[idx], y[idx].clone()
        labels[torch.rand(len(idx), generator=gen) < r["p_uncond"]] = dom.num_classes
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = F.mse_loss(model(sched.add_noise(x0, noise, t), t, class_labels=labels).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sched.step()
        if (step + 1) % 2000 == 0:
            log(f"  denoiser step {step + 1}/{r['steps']} loss {loss.item():.4f}")
    model.eval()
    return save_model(model, domain, "diffusion_mlp", {
        "arch": "MLPDenoiser", "arch_kwargs": kwargs, "recipe": r, "train_seconds": round(time.time() - t0, 1),
        "test_loss": _denoising_loss(dom, model, sched), "versions": VERSIONS}, root=root)


@torch.no_grad()
def _denoising_loss(dom, model, sched) -> dict:
    """The DDPM loss on the test split (fixed noise and times), for the learned model and,
    on a mixture domain, for the exact one: the gap is the network's own error."""
    from optbench.models.diffusion import to_model_range
    x, y = dom.load_split("test")
    x0 = to_model_range(x, dom.bounds)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = sched.add_noise(x0, noise, t)
    out = {"learned": round(float(F.mse_loss(model(xt, t, class_labels=y).sample, noise)), 5)}
    from optbench.models.exact import mixture_in_model_range
    exact = mixture_in_model_range(dom)
    if exact is not None:
        eps = torch.stack([exact.ideal_eps(xt[i:i + 1], float(sched.alphas_cumprod[t[i]]), y[i:i + 1])[0]
                           for i in range(len(xt))]).float()
        out["exact"] = round(float(F.mse_loss(eps, noise)), 5)
    return out
