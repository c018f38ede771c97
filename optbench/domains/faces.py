"""faces: procedurally rendered 28 x 28 faces with known latents (optbench/gold/faces.py).
Classes: 0 frowning or straight mouth, 1 smiling (mouth curvature > 0). A smile
classifier is the proxy, so pressure asks for "the maximally smiling face", and the gold
referee says whether the answer is still a face: its distance to the renderer's
manifold by projection, and the smile of the face it projects to.

Splits per class: proxy_train 500, judge_train 1,000, generator_train 1,500, test 250,
reference 500 (7,500 images in all, drawn once from a fixed seed)."""
from __future__ import annotations

import numpy as np

from optbench.domains.base import Domain


class Faces(Domain):
    name = "faces"
    num_classes = 2
    shape = (1, 28, 28)
    splits = {"proxy_train": 500, "judge_train": 1000, "generator_train": 1500, "test": 250, "reference": 500}
    split_seed = 20261124
    shipped = True
    # MNIST's referee recipes minus the adversarially trained judge (its PGD training is
    # the slowest of all): two judges, the CNN alone as the ensemble, three feature spaces.
    judges = ("judge_bncnn", "judge_mlp")
    ensemble = ("judge_bncnn",)
    feature_spaces = ("judge_bncnn", "feature_ae", "judge_mlp")

    def load_pool(self) -> tuple[np.ndarray, np.ndarray]:
        from optbench.gold.faces import sample
        per_class = sum(self.splits.values())
        rng = np.random.default_rng([self.split_seed, 3])
        parts = [sample(per_class, rng, y=c) for c in range(self.num_classes)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def exact_models(self) -> dict:
        from optbench.gold.faces import FaceSampler
        return {"sampler_exact": (FaceSampler(), {}, "the renderer plus pixel noise as a generator: exact samples")}

    def gold(self):
        if "_gold" not in self.__dict__:
            from optbench.gold.faces import ManifoldReferee
            self._gold = ManifoldReferee()
        return self._gold
