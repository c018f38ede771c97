"""Training recipes of a domain's classifiers (the proxy, its variants and control, the
judges), its autoencoder feature net and the shape arguments of its generators and
noise-aware classifier: data, not code that trains. The image recipes are written once,
for a 1x28x28 image (IMAGE_RECIPES, FEATURE_AE), and sized from each domain's shape
(`standard_recipes`, `feature_ae_recipe`, `sizing`); the domain they were written for
(`Domain.template_recipes`: MNIST) gets them as written, since its shipped checkpoints,
cell ids and replicate hashes were made from them. Runs read them (a per-seed replicate retrains its proxy's
recipe); the trainers are in optbench/training/."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from optbench.domains import get_domain


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


# The size the image recipes are written for: epochs, shifts and L2 budgets are scaled
# from it (a 1x28x28 image, 1,000 examples in proxy_train).
TEMPLATE_SHAPE, TEMPLATE_TRAIN = (1, 28, 28), 1000

IMAGE_RECIPES: dict[str, Recipe] = {
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
    """IMAGE_RECIPES for an image domain: the architectures sized from its shape,
    classes and normalization; L2 budgets scaled by sqrt(pixels / 784) (a budget of the
    same per-pixel size); shifts scaled to its width; epochs raised so a small training
    split gets about as many steps as the template's 1,000 examples."""
    dom = get_domain(domain)
    if not dom.is_image:
        raise ValueError(f"domain {dom.name!r}: the shipped recipes are for images (C, H, W); "
                         f"shape {dom.shape} needs its own models")
    shape = dom.model_shape_kwargs()
    scale = math.sqrt(math.prod(dom.shape) / math.prod(TEMPLATE_SHAPE))
    n_train = len(dom.split_indices("proxy_train"))
    out = {}
    for name, r in IMAGE_RECIPES.items():
        epochs = max(r.epochs, round(r.epochs * TEMPLATE_TRAIN / n_train)) if r.epochs else 0
        out[name] = replace(r, arch_kwargs={**r.arch_kwargs, **shape}, epochs=epochs,
                            shift=min(r.shift, round(r.shift * dom.shape[-1] / TEMPLATE_SHAPE[-1])),
                            adv_eps_l2=round(r.adv_eps_l2 * scale, 3))
    return out


# Models shipped by a trainer of another name (`optbench train <domain> --only <trainer>`).
TRAINED_BY = {"gan_generator": "gan", "gan_discriminator": "gan", "proxy_ens_mean": "ensembles",
              "proxy_ens_min": "ensembles", "sampler_exact": "exact", "diffusion_exact": "exact",
              "noisy_exact": "exact"}


def vector_recipes(domain) -> dict[str, Recipe]:
    """The classifiers of a plain-vector domain (shape (d,)), all nets.MLP: the proxy
    learns from proxy_train; its variants differ in size and in sample count (the
    generator split, ten times larger); the judges learn from judge_train."""
    dom = get_domain(domain)
    shape = dom.model_shape_kwargs()

    def mlp(role, hidden, split, seed, epochs, notes):
        return Recipe(role, "MLP", {"hidden": hidden, **shape}, split, seed, epochs=epochs, notes=notes)
    return {
        "proxy_mlp": mlp("proxy", 64, "proxy_train", 11, 300, "the frozen model the optimizer pushes against"),
        "proxy_mlp_wide": mlp("proxy", 256, "proxy_train", 43, 300, "the proxy at 4x the width, same data"),
        "proxy_mlp_n1000": mlp("proxy", 64, "generator_train", 44, 30,
                               "the proxy's architecture on 10x the examples (the generator split)"),
        "proxy_mlp_untrained": mlp("control", 64, "proxy_train", 11, 0,
                                   "control: proxy_mlp's architecture and initial weights, untrained"),
        "judge_mlp": mlp("judge", 256, "judge_train", 12, 40, "judge and the primary feature net"),
        "judge_wide": mlp("judge", 512, "judge_train", 13, 40, "judge (ensemble) and a feature space"),
        "judge_small": mlp("judge", 32, "judge_train", 14, 40, "transfer probe, not in the ensemble"),
    }


def recipes_for(domain) -> dict[str, Recipe]:
    """The domain's classifier recipes: the template as written for the domain it was
    written for, else sized from the domain's shape."""
    dom = get_domain(domain)
    if dom.template_recipes:
        return dict(IMAGE_RECIPES)
    return standard_recipes(dom) if dom.is_image else vector_recipes(dom)


def ensemble_kwargs(base: Recipe, members: int, reduce: str) -> dict:
    """ProxyEnsemble's arguments: k members of the proxy's recipe (and its sizing)."""
    return {"members": members, "width": base.arch_kwargs["width"], "reduce": reduce,
            **{k: v for k, v in base.arch_kwargs.items() if k != "width"}}


# The autoencoder feature space (not a classifier, so not a Recipe): MSE reconstruction on
# judge_train, the split the other referee networks learned from.
FEATURE_AE = {"arch": "ConvAE", "arch_kwargs": {"width": 16, "latent": 32}, "split": "judge_train",
              "seed": 15, "epochs": 80, "batch_size": 64, "lr": 2e-3,
              "notes": "feature space for the distribution metrics; features = 32-d bottleneck"}


def feature_ae_recipe(domain) -> dict:
    """FEATURE_AE for an image domain: its shape and bounds, and a bottleneck of a
    quarter of its values (8 to 32); the template's domain gets it as written."""
    dom = get_domain(domain)
    if dom.template_recipes:
        return dict(FEATURE_AE)
    return {**FEATURE_AE, "arch_kwargs": {**FEATURE_AE["arch_kwargs"], "in_shape": list(dom.shape),
                                          "bounds": list(dom.bounds),
                                          "latent": min(32, max(8, math.prod(dom.shape) // 4))}}


def sizing(domain, arch: str) -> dict:
    """The shape arguments an image domain's generator, discriminator or noise-aware
    classifier gets beside its recipe's own (widths, latent size): the domain's shape,
    bounds and classes; none for the template's domain (the architectures' defaults)."""
    dom = get_domain(domain)
    shape, bounds = list(dom.shape), list(dom.bounds)
    derived = {"DCGANGenerator": {"out_shape": shape, "bounds": bounds},
               "DCGANDiscriminator": {"in_shape": shape, "bounds": bounds},
               "NoisyCNN": {"in_shape": shape, "num_classes": dom.num_classes}}
    if arch not in derived:
        raise ValueError(f"sizing: unknown architecture {arch!r}; allowed: {', '.join(derived)}")
    return {} if dom.template_recipes else derived[arch]


