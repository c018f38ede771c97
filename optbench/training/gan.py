"""Training the DCGAN of a domain (models/gan.py): `optbench train <domain> --only gan`."""
from __future__ import annotations

import copy
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from optbench.models.gan import LATENT_DIM, DCGANDiscriminator, DCGANGenerator, generate, sample_latents


def translate(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Differentiable random translation of the whole batch (DiffAugment-style, Zhao et al.
    2020): with 1,500 training digits the discriminator overfits without it."""
    if max_shift == 0:   # no augmentation (and no draw from `gen`)
        return x
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(F.pad(x, [max_shift] * 4), (dy, dx), dims=(2, 3))[
        :, :, max_shift:-max_shift, max_shift:-max_shift]


GAN_RECIPE = {"split": "generator_train", "steps": 8000, "batch_size": 64, "lr": 2e-4,
              "betas": (0.5, 0.999), "seed": 31, "ema_decay": 0.999, "shift": 2,
              "latent_dim": LATENT_DIM, "g_width": 64, "d_width": 64}


def train_gan(x: torch.Tensor, recipe: dict, log=print, g_kwargs: dict | None = None,
              d_kwargs: dict | None = None, build=None) -> tuple[nn.Module, nn.Module, dict]:
    """Non-saturating GAN loss (Goodfellow et al. 2014, sec. 3), Adam as in DCGAN; returns
    the EMA generator, the discriminator and a record. `build()` -> (G, D) replaces the
    DCGAN pair (a vector domain's MLPs); recipe shift 0 means no augmentation."""
    r = recipe
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    if build is not None:
        G, D = build()
    else:
        G = DCGANGenerator(r["latent_dim"], r["g_width"], **(g_kwargs or {}))
        D = DCGANDiscriminator(r["d_width"], **(d_kwargs or {}))
    G_ema = copy.deepcopy(G).requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=r["lr"], betas=tuple(r["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=r["lr"], betas=tuple(r["betas"]))
    t0, losses, run_d, run_g = time.time(), [], None, None
    for step in range(r["steps"]):
        real = x[torch.randint(0, len(x), (r["batch_size"],), generator=gen)]
        z = torch.randn(r["batch_size"], r["latent_dim"], generator=gen)
        fake = G(z)
        # Discriminator: softplus(-D(real)) + softplus(D(fake)).
        d_loss = (F.softplus(-D(translate(real, r["shift"], gen))).mean()
                  + F.softplus(D(translate(fake.detach(), r["shift"], gen))).mean())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # Generator: the non-saturating loss softplus(-D(G(z))).
        g_loss = F.softplus(-D(translate(fake, r["shift"], gen))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - r["ema_decay"])
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        run_d = d_loss.item() if run_d is None else 0.99 * run_d + 0.01 * d_loss.item()
        run_g = g_loss.item() if run_g is None else 0.99 * run_g + 0.01 * g_loss.item()
        if (step + 1) % 500 == 0 or step + 1 == r["steps"]:
            losses.append((step + 1, round(run_d, 4), round(run_g, 4)))
            log(f"  gan step {step + 1}/{r['steps']} d_loss {run_d:.3f} g_loss {run_g:.3f} "
                f"{(step + 1) / (time.time() - t0):.1f} steps/s")
    G_ema.eval()
    D.eval().requires_grad_(False)
    return G_ema, D, {"losses": losses, "seconds": round(time.time() - t0, 1)}


def gan_recipe(domain, **overrides) -> tuple[dict, dict, dict]:
    """The recipe and the generator's and discriminator's shape arguments for `domain`
    (models/recipes.py `sizing`). The translation augmentation scales with the image: 2
    pixels of a 28-pixel width. On digits8's 8x8 images 2 pixels gave KID 0.52 against
    0.040 with 1 and 0.052 with 0."""
    from optbench.domains import get_domain
    from optbench.models.recipes import TEMPLATE_SHAPE, sizing
    dom = get_domain(domain)
    r = {**GAN_RECIPE, "shift": round(GAN_RECIPE["shift"] * dom.shape[-1] / TEMPLATE_SHAPE[-1]), **overrides}
    return r, sizing(dom, "DCGANGenerator"), sizing(dom, "DCGANDiscriminator")


def train_gan_checkpoint(domain, root=None, log=print, **overrides) -> dict:
    """Train and ship `gan_generator` and `gan_discriminator`; record the generator's KID
    and FID against the reference set (and real-vs-real for scale) in the manifest."""
    from optbench.domains import get_domain
    from optbench.models.checkpoints import load_model, save_model
    from optbench.referees.distribution import extract, fid_kid
    dom = get_domain(domain)
    r, g_kwargs, d_kwargs = gan_recipe(dom, **overrides)
    x, _ = dom.load_split(r["split"])
    G, D, record = train_gan(x, r, log, g_kwargs, d_kwargs)
    feature_net = load_model(domain, dom.feature_net)
    ref = extract(feature_net, dom.load_split("reference")[0])
    fake = generate(G, sample_latents(1000, seed=0, latent_dim=r["latent_dim"]))
    quality = {k: round(v, 5) for k, v in fid_kid(ref, extract(feature_net, fake)).items()}
    real = {k: round(v, 5) for k, v in fid_kid(ref, extract(feature_net, dom.load_split("test")[0])).items()}
    log(f"  gan generator vs reference: {quality}; test digits vs reference: {real}")
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    common = {"recipe": r, "train_seconds": record["seconds"], "loss_curve": record["losses"],
              "threads": torch.get_num_threads(), "versions": versions}
    g_entry = save_model(G, domain, "gan_generator", {
        "arch": "DCGANGenerator", "arch_kwargs": {"latent_dim": r["latent_dim"], "width": r["g_width"], **g_kwargs},
        "sample_quality_1000": quality, "test_vs_reference": real,
        "parameters": sum(p.numel() for p in G.parameters()), **common}, root=root)
    save_model(D, domain, "gan_discriminator", {
        "arch": "DCGANDiscriminator", "arch_kwargs": {"width": r["d_width"], **d_kwargs},
        "parameters": sum(p.numel() for p in D.parameters()), **common}, root=root)
    return g_entry
