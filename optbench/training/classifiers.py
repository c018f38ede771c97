"""Training recipes for a domain's classifiers (the proxy, its variants and control, the
judges) and its autoencoder feature net. MNIST's recipes are written out; any other
image domain gets the same recipes sized from its shape (`standard_recipes`). The same
seed gives the same weights on one machine."""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from optbench.domains import get_domain
from optbench.models.checkpoints import save_model
from optbench.models.nets import build
from optbench.pressure.budget import project


@dataclass(frozen=True)
class Recipe:
    role: str                 # "proxy", "judge" (a judge may also be the feature net)
    arch: str
    arch_kwargs: dict
    split: str
    seed: int
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    shift: int = 0            # random translation augmentation, in pixels
    adv_eps_l2: float = 0.0   # > 0: PGD adversarial training (Madry et al. 2018) in L2
    adv_steps: int = 7
    notes: str = ""
    extra: dict = field(default_factory=dict)


MNIST_RECIPES: dict[str, Recipe] = {
    "proxy_cnn": Recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=11,
                        notes="the frozen model the optimizer pushes against"),
    "judge_bncnn": Recipe("judge", "BNCNN", {"width": 32}, "judge_train", seed=12, shift=2,
                          notes="batch-norm CNN with shift augmentation; also the feature net"),
    "judge_robust": Recipe("judge", "BNCNN", {"width": 16}, "judge_train", seed=13, shift=1,
                           adv_eps_l2=1.5, notes="L2 PGD adversarially trained (eps 1.5), shift augmentation"),
    "judge_mlp": Recipe("judge", "MLP", {"hidden": 256}, "judge_train", seed=14,
                        notes="transfer probe, not in the ensemble: an MLP is fooled almost as easily as the proxy"),
    # Proxy variants (the crux suite): robust, larger; the ensembles are built below.
    "proxy_adv05": Recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=41, adv_eps_l2=0.5,
                          notes="the proxy's architecture, L2 PGD adversarially trained at eps 0.5"),
    "proxy_adv15": Recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=42, adv_eps_l2=1.5,
                          notes="the proxy's architecture, L2 PGD adversarially trained at eps 1.5"),
    "proxy_cnn_w32": Recipe("proxy", "SmallCNN", {"width": 32}, "proxy_train", seed=43,
                            notes="the proxy's architecture at twice the width (about 4x the weights)"),
    "proxy_cnn_w64": Recipe("proxy", "SmallCNN", {"width": 64}, "proxy_train", seed=44,
                            notes="the proxy's architecture at four times the width"),
    # The control: proxy_cnn's recipe with no training at all (its initial weights, seed 11).
    # Pushing against it with the same optimizer shows how much departure the optimizer
    # causes by itself, whatever the proxy has learned.
    "proxy_cnn_untrained": Recipe("control", "SmallCNN", {"width": 16}, "proxy_train", seed=11, epochs=0,
                                  notes="control: proxy_cnn's architecture and initial weights, untrained"),
}
ENSEMBLE_MEMBERS = 5
ENSEMBLE_SEEDS = tuple(range(51, 51 + ENSEMBLE_MEMBERS))
ENSEMBLE_PROXIES = {"proxy_ens_mean": "mean", "proxy_ens_min": "min"}


def standard_recipes(domain) -> dict[str, Recipe]:
    """MNIST's recipes for another image domain: the architectures sized from its shape
    and normalization; L2 budgets scaled by sqrt(pixels / 784) (a budget of the same
    per-pixel size); shifts scaled to its width; epochs raised so a small training split
    gets about as many steps as MNIST's 1,000 digits."""
    dom = get_domain(domain)
    if not dom.is_image:
        raise ValueError(f"domain {dom.name!r}: the shipped recipes are for images (C, H, W); "
                         f"shape {dom.shape} needs its own models")
    shape = dom.model_shape_kwargs()
    scale = math.sqrt(math.prod(dom.shape) / 784)
    n_train = len(dom.split_indices("proxy_train"))
    out = {}
    for name, r in MNIST_RECIPES.items():
        epochs = max(r.epochs, round(r.epochs * 1000 / n_train)) if r.epochs else 0
        out[name] = replace(r, arch_kwargs={**r.arch_kwargs, **shape}, epochs=epochs,
                            shift=min(r.shift, round(r.shift * dom.shape[-1] / 28)),
                            adv_eps_l2=round(r.adv_eps_l2 * scale, 3))
    return out


def recipes_for(domain) -> dict[str, Recipe]:
    dom = get_domain(domain)
    return MNIST_RECIPES if dom.name == "mnist" else standard_recipes(dom)


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


def ensemble_kwargs(base: Recipe, members: int, reduce: str) -> dict:
    """ProxyEnsemble's arguments: k members of the proxy's recipe (and its sizing)."""
    return {"members": members, "width": base.arch_kwargs["width"], "reduce": reduce,
            **{k: v for k, v in base.arch_kwargs.items() if k != "width"}}


# The autoencoder feature space (not a classifier, so not a Recipe): MSE reconstruction on
# judge_train, the split the other referee networks learned from.
FEATURE_AE = {"arch": "ConvAE", "arch_kwargs": {"width": 16, "latent": 32}, "split": "judge_train",
              "seed": 15, "epochs": 80, "batch_size": 64, "lr": 2e-3,
              "notes": "feature space for the distribution metrics; features = 32-d bottleneck"}


@torch.no_grad()
def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor) -> float:
    return float(F.mse_loss(model(x), x))


def train_feature_ae_checkpoint(domain: str, root=None, log=print) -> dict:
    """Train the autoencoder feature net and ship it, with its test reconstruction error
    (and, for scale, the error on uniform noise) in the manifest."""
    dom = get_domain(domain)
    r = FEATURE_AE if dom.name == "mnist" else {
        **FEATURE_AE, "arch_kwargs": {**FEATURE_AE["arch_kwargs"], "in_shape": list(dom.shape),
                                      "bounds": list(dom.bounds),
                                      "latent": min(32, max(8, math.prod(dom.shape) // 4))}}
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
