"""Training a domain's models: `optbench train <domain>`.

A run imports this package for one thing: a per-seed proxy replicate
(training/replicates.py) trains its recipe's classifier the first time it is needed.
What each model is for is in README "Shipped models"; how each is trained is its recipe,
recorded in the domain's manifest beside its sha256."""
from __future__ import annotations

import platform

import torch

from optbench.domains import get_domain
from optbench.models.checkpoints import save_model
from optbench.models.recipes import Recipe, recipes_for
from optbench.training.classifiers import (predict, train_ensemble_checkpoints, train_feature_ae_checkpoint,
                                           train_one)


def other_trainers(domain) -> dict:
    """Trainers that are not a single classifier recipe. `gan` ships gan_generator and
    gan_discriminator; `ensembles` ships proxy_ens_mean and proxy_ens_min; `feature_ae`
    is the autoencoder feature net; `diffusion_unet` is a class-conditional UNet and
    `noisy_classifier` its noise-aware classifier, both sized from the domain (MNIST's
    UNet took about an hour on one CPU core; a size the UNet cannot take is refused when
    it is trained). A vector domain ships a coordinate feature space, an MLP GAN, an MLP
    denoiser and an MLP noise-aware classifier."""
    dom = get_domain(domain)
    if not dom.is_image:
        from optbench.training import vector
        from optbench.training.diffusion import train_noisy_classifier_checkpoint
        out = {"coords": vector.train_coords_checkpoint, "gan": vector.train_vector_gan_checkpoint,
               "diffusion_mlp": vector.train_denoiser_checkpoint,
               "noisy_classifier": train_noisy_classifier_checkpoint}
        if hasattr(dom, "exact_models"):
            from optbench.training.exact import ship_exact_models
            out["exact"] = ship_exact_models
        return out
    from optbench.training.diffusion import train_diffusion_checkpoint, train_noisy_classifier_checkpoint
    from optbench.training.gan import train_gan_checkpoint
    out = {"noisy_classifier": train_noisy_classifier_checkpoint, "diffusion_unet": train_diffusion_checkpoint,
           "feature_ae": train_feature_ae_checkpoint, "gan": train_gan_checkpoint,
           "ensembles": lambda domain, root=None, log=print: train_ensemble_checkpoints(domain, root, log)}
    if hasattr(dom, "exact_models"):
        from optbench.training.exact import ship_exact_models
        out["exact"] = ship_exact_models
    return out


def train_domain(domain, only: list[str] | None = None, root=None, log=print) -> dict:
    """Train every model of `domain` (or those in `only`), write checkpoints and manifest.
    The classifiers come first: the GAN's quality is measured in the feature net's space."""
    dom = get_domain(domain)
    recipes = recipes_for(dom)
    others = other_trainers(dom)
    names = only or [*recipes, *others]
    unknown = [n for n in names if n not in recipes and n not in others]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; allowed: {', '.join([*recipes, *others])}")
    entries = {}
    classifiers = [n for n in names if n in recipes]
    if classifiers:
        entries |= _train_classifiers(dom, recipes, classifiers, root, log)
    for name in names:
        if name in others:
            log(f"training {name}")
            entries[name] = others[name](dom.name, root=root, log=log)
    return entries


def _train_classifiers(dom, recipes: dict, names: list[str], root, log) -> dict:
    x_test, y_test = dom.load_split("test")
    trained: dict[str, torch.nn.Module] = {}
    for name in names:
        log(f"training {name} ({recipes[name].arch}) on {recipes[name].split}")
        trained[name] = train_one(dom.name, name, recipes[name], log)
    # Agreement with the default proxy on clean data, when there is one to compare with.
    proxy = trained.get(dom.default_proxy)
    if proxy is None:  # from `root` if it has one, else the domain's own
        from optbench.models.checkpoints import load_model
        from optbench.errors import CheckpointError
        for r in (root, None):
            try:
                proxy = load_model(dom, dom.default_proxy, root=r)
                break
            except CheckpointError:
                continue
    proxy_pred = predict(proxy, x_test) if proxy is not None else None
    entries = {}
    for name, model in trained.items():
        r = recipes[name]
        pred = predict(model, x_test)
        entry = {
            "arch": r.arch, "arch_kwargs": r.arch_kwargs, "recipe": _asdict(r),
            "test_accuracy": round(float((pred == y_test).float().mean()), 4),
            "agreement_with_proxy_clean": (round(float((pred == proxy_pred).float().mean()), 4)
                                           if proxy_pred is not None else None),
            "train_seconds": round(model._train_seconds, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
        }
        entries[name] = save_model(model, dom.name, name, entry, root=root)
        log(f"  {name}: test accuracy {entry['test_accuracy']:.4f}, "
            f"agreement with proxy {entry['agreement_with_proxy_clean']}")
    return entries


def _asdict(r: Recipe) -> dict:
    from dataclasses import asdict
    return asdict(r)
