"""Training a domain's classifiers and its autoencoder feature net by their recipes
(optbench/models/recipes.py). The same seed gives the same weights on one machine."""
from __future__ import annotations

import platform
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from optbench.domains import get_domain
from optbench.models.checkpoints import save_model
from optbench.models.nets import build
from optbench.models.recipes import (ENSEMBLE_PROXIES, ENSEMBLE_SEEDS, Recipe, ensemble_kwargs,
                                     feature_ae_recipe, recipes_for)
from optbench.pressure.budget import project


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero fill)."""
    if max_shift == 0:
        return x
    n = x.shape[0]
    pad = F.pad(x, [max_shift] * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    h, w = x.shape[-2:]
    return torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def pgd_l2(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
           gen: torch.Generator) -> torch.Tensor:
    """Untargeted L2 PGD from a random start inside the ball: maximise the loss."""
    step = 2.5 * eps / steps
    noise = torch.randn(x.shape, generator=gen)
    noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * torch.rand(
        x.shape[0], 1, 1, 1, generator=gen)
    adv = project(x + noise, x, "l2", eps)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        adv = project(adv.detach() + step * g, x, "l2", eps)
    return adv.detach()


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def descend(loss: torch.Tensor, opt: torch.optim.Optimizer, sched) -> float:
    """One optimizer and scheduler step on `loss`; returns its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def train_one(domain: str, name: str, recipe: Recipe, log=print) -> torch.nn.Module:
    dom = get_domain(domain)
    x, y = dom.load_split(recipe.split)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    model = build(recipe.arch, **recipe.arch_kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps_per_epoch = (len(x) + recipe.batch_size - 1) // recipe.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs * steps_per_epoch)
    t0 = time.time()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            xb, yb = random_shift(x[idx], recipe.shift, gen), y[idx]
            if recipe.adv_eps_l2 > 0:
                model.eval()  # attack the current weights without touching BN statistics
                xb = pgd_l2(model, xb, yb, recipe.adv_eps_l2, recipe.adv_steps, gen)
            model.train()
            total += descend(F.cross_entropy(model(xb), yb), opt, sched) * len(idx)
        if epoch == recipe.epochs - 1 or epoch % 10 == 0:
            log(f"  {name} epoch {epoch + 1}/{recipe.epochs} loss {total / len(x):.4f}")
    model.eval()
    model._train_seconds = time.time() - t0  # reported in the manifest
    return model


def train_ensemble_checkpoints(domain: str, root=None, log=print) -> dict:
    """Train ENSEMBLE_MEMBERS copies of the proxy's recipe with other seeds and ship them as
    two proxies, the mean-logit and the worst-case (min) ensemble."""
    from optbench.models.nets import ProxyEnsemble
    base = recipes_for(domain)["proxy_cnn"]
    members = [train_one(domain, f"member {i}", Recipe(**{**asdict(base), "seed": s}), log)
               for i, s in enumerate(ENSEMBLE_SEEDS)]
    dom = get_domain(domain)
    x_test, y_test = dom.load_split("test")
    entries = {}
    for name, reduce in ENSEMBLE_PROXIES.items():
        kwargs = ensemble_kwargs(base, len(members), reduce)
        model = ProxyEnsemble(**kwargs)
        for m, trained in zip(model.members, members):
            m.load_state_dict(trained.state_dict())
        model.eval()
        acc = float((predict(model, x_test) == y_test).float().mean())
        entries[name] = save_model(model, domain, name, {
            "arch": "ProxyEnsemble", "arch_kwargs": kwargs,
            "recipe": {**asdict(base), "seeds": list(ENSEMBLE_SEEDS)},
            "test_accuracy": round(acc, 4),
            "member_test_accuracy": [round(float((predict(m, x_test) == y_test).float().mean()), 4) for m in members],
            "train_seconds": round(sum(m._train_seconds for m in members), 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "versions": {"torch": torch.__version__, "python": platform.python_version()}}, root=root)
        log(f"  {name}: test accuracy {acc:.4f}")
    return entries


@torch.no_grad()
def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor) -> float:
    return float(F.mse_loss(model(x), x))


def train_feature_ae_checkpoint(domain: str, root=None, log=print) -> dict:
    """Train the autoencoder feature net and ship it, with its test reconstruction error
    (and, for scale, the error on uniform noise) in the manifest."""
    dom = get_domain(domain)
    r = feature_ae_recipe(dom)
    x, _ = dom.load_split(r["split"])
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    model = build(r["arch"], **r["arch_kwargs"])
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    steps = r["epochs"] * ((len(x) + r["batch_size"] - 1) // r["batch_size"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    t0 = time.time()
    for epoch in range(r["epochs"]):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), r["batch_size"]):
            xb = x[order[i:i + r["batch_size"]]]
            total += descend(F.mse_loss(model(xb), xb), opt, sched) * len(xb)
        if epoch == r["epochs"] - 1 or epoch % 10 == 0:
            log(f"  feature_ae epoch {epoch + 1}/{r['epochs']} loss {total / len(x):.5f}")
    seconds = time.time() - t0
    model.eval()
    with torch.no_grad():   # standardize the features (not the codes the decoder reads)
        codes = model.encoder(x)
        model.code_mean.copy_(codes.mean(0))
        model.code_std.copy_(codes.std(0))
    x_test, _ = dom.load_split("test")
    noise = torch.rand(x_test.shape, generator=torch.Generator().manual_seed(0))
    entry = {"arch": r["arch"], "arch_kwargs": r["arch_kwargs"], "recipe": {"role": "feature net", **r},
             "final_loss": round(total / len(x), 6),
             "test_reconstruction_mse": round(reconstruction_mse(model, x_test), 6),
             "noise_reconstruction_mse": round(reconstruction_mse(model, noise), 6),
             "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
             "parameters": sum(p.numel() for p in model.parameters()),
             "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    log(f"  feature_ae: test reconstruction MSE {entry['test_reconstruction_mse']}, "
        f"noise {entry['noise_reconstruction_mse']}, {seconds:.1f} s")
    return save_model(model, domain, "feature_ae", entry, root=root)
