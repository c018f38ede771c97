"""Training the class-conditional diffusion model and the noise-aware classifier of a
domain (models/diffusion.py), sized from its shape and classes."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from optbench.models.diffusion import SCHEDULER_CONFIG, build_unet, to_model_range, unet_config


def build_train_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(**SCHEDULER_CONFIG)


def train_diffusion(x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int = 128,
                    lr: float = 1e-3, seed: int = 0, p_uncond: float = 0.1,
                    ema_decay: float = 0.999, bf16: bool = False, log=print,
                    log_every: int = 100, *, config: dict, bounds=(0.0, 1.0)):
    """Train the UNet of `config` (models/diffusion.py unet_config) with the epsilon
    objective (Ho et al. 2020, eq. 14) on x in `bounds`; return the EMA model and a record
    (losses, seconds). Labels dropped to the null label are config's last class."""
    from diffusers.training_utils import EMAModel
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = build_unet(**config)
    null = int(config["num_class_embeds"]) - 1
    ema = EMAModel(unet.parameters(), decay=ema_decay)
    sched = build_train_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warmup = min(200, steps // 10 + 1)
    lr_at = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(s / steps * torch.pi)).item())  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    x = to_model_range(x, bounds)
    t0, losses, running = time.time(), [], None
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        x0, labels = x[idx], y[idx].clone()
        labels[torch.rand(batch_size, generator=gen) < p_uncond] = null
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = unet(xt, t, class_labels=labels).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        scheduler.step()
        ema.step(unet.parameters())
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses.append((step + 1, round(running, 5)))
            log(f"  diffusion step {step + 1}/{steps} loss(ema) {running:.4f} "
                f"{(step + 1) / (time.time() - t0):.2f} steps/s")
    ema.copy_to(unet.parameters())
    unet.eval().requires_grad_(False)
    return unet, {"losses": losses, "final_loss": running, "seconds": round(time.time() - t0, 1)}


DIFFUSION_RECIPE = {"split": "generator_train", "steps": 4000, "batch_size": 128, "lr": 1e-3,
                    "seed": 21, "p_uncond": 0.1, "ema_decay": 0.999, "bf16": True}


def diffusion_recipe(domain, arch_kwargs: dict | None = None, **overrides) -> tuple[dict, dict]:
    """The recipe and the UNet config of an image domain's `diffusion_unet`: the
    domain's size, channels and classes (models/diffusion.py unet_config), with
    `arch_kwargs` in place of the shipped blocks (e.g. smaller block_out_channels). A
    size the UNet cannot take is refused in one line naming the domain."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    config = unet_config(dom.shape, dom.num_classes, where=f"domain {dom.name!r}", **(arch_kwargs or {}))
    return {**DIFFUSION_RECIPE, **overrides}, config


def train_diffusion_checkpoint(domain, root=None, log=print, arch_kwargs: dict | None = None,
                               **overrides) -> dict:
    """Train an image domain's diffusion model (`diffusion_unet`) and record it in the
    manifest (`root`/<domain>, or the domain's own folder)."""
    import platform

    from optbench.domains import get_domain
    from optbench.models.checkpoints import save_model
    dom = get_domain(domain)
    recipe, config = diffusion_recipe(dom, arch_kwargs, **overrides)
    x, y = dom.load_split(recipe["split"])
    unet, record = train_diffusion(x, y, recipe["steps"], recipe["batch_size"], recipe["lr"],
                                   recipe["seed"], recipe["p_uncond"], recipe["ema_decay"],
                                   recipe["bf16"], log=log, config=config, bounds=dom.bounds)
    entry = {"arch": "UNet2DModel", "arch_kwargs": config, "recipe": recipe,
             "scheduler": SCHEDULER_CONFIG, "null_class": config["num_class_embeds"] - 1,
             "final_loss": round(record["final_loss"], 5), "loss_curve": record["losses"],
             "train_seconds": record["seconds"], "threads": torch.get_num_threads(),
             "parameters": sum(p.numel() for p in unet.parameters()),
             "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    return save_model(unet, dom, "diffusion_unet", entry, root=root)


NOISY_CLASSIFIER_RECIPE = {"split": "proxy_train", "arch_kwargs": {"width": 32}, "steps": 3000,
                           "batch_size": 128, "lr": 2e-3, "seed": 22, "shift": 1}
# A vector domain's (models/vector.py NoisyMLP): the same loop, no shifts.
NOISY_MLP_RECIPE = {**NOISY_CLASSIFIER_RECIPE, "arch_kwargs": {"hidden": 128}, "shift": 0}


def noisy_classifier_recipe(domain, **overrides) -> tuple[type, dict, dict]:
    """The architecture, the arch_kwargs and the recipe of `noisy_classifier`: NoisyCNN
    sized from an image domain's shape and classes (models/recipes.py `sizing`), NoisyMLP
    from a vector domain's."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    if dom.is_image:
        from optbench.models.nets import NoisyCNN as arch
        from optbench.models.recipes import sizing
        r = {**NOISY_CLASSIFIER_RECIPE, **overrides}
        return arch, {**r["arch_kwargs"], **sizing(dom, "NoisyCNN")}, r
    from optbench.models.vector import NoisyMLP as arch
    r = {**NOISY_MLP_RECIPE, **overrides}
    return arch, {"dim": dom.shape[0], "num_classes": dom.num_classes, **r["arch_kwargs"]}, r


def train_noisy_classifier_checkpoint(domain, root=None, log=print, **overrides) -> dict:
    """Train `noisy_classifier` on x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for
    uniform t (the forward process of the domain's diffusion model), on proxy-train:
    NoisyCNN on an image domain, NoisyMLP on a vector domain."""
    import platform

    from optbench.domains import get_domain
    from optbench.models.checkpoints import save_model
    from optbench.training.classifiers import random_shift
    dom = get_domain(domain)
    arch, kwargs, r = noisy_classifier_recipe(dom, **overrides)
    x, y = dom.load_split(r["split"])
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    model = arch(**kwargs)
    sched = build_train_scheduler()
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=1e-4)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, r["steps"])
    t0, running = time.time(), None
    for step in range(r["steps"]):
        idx = torch.randint(0, len(x), (r["batch_size"],), generator=gen)
        x0 = to_model_range(random_shift(x[idx], r["shift"], gen), dom.bounds)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=gen)
        xt = sched.add_noise(x0, torch.randn(x0.shape, generator=gen), t)
        loss = F.cross_entropy(model(xt, t), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        cos.step()
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if (step + 1) % 500 == 0:
            log(f"  noisy_classifier step {step + 1}/{r['steps']} loss(ema) {running:.4f}")
    model.eval().requires_grad_(False)
    # Accuracy on the clean test split and at a few noise levels.
    x_test, y_test = dom.load_split("test")
    acc = {}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t_val in (0, 250, 500, 750):
            t = torch.full((len(x_test),), t_val)
            xt = sched.add_noise(to_model_range(x_test, dom.bounds), torch.randn(x_test.shape, generator=g), t)
            acc[str(t_val)] = round(float((model(xt, t).argmax(1) == y_test).float().mean()), 4)
    entry = {"arch": arch.__name__, "arch_kwargs": kwargs, "recipe": r,
             "test_accuracy": acc["0"], "test_accuracy_at_t": acc,
             "train_seconds": round(time.time() - t0, 1), "final_loss": round(running, 4),
             "parameters": sum(p.numel() for p in model.parameters()),
             "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    log(f"  noisy_classifier accuracy by t: {acc}")
    return save_model(model, dom, "noisy_classifier", entry, root=root)
