"""Proxies: the frozen model an optimizer pushes against, and the one place that knows
how to read it.

A proxy wraps a torch module with a *kind*, which says what its output means:

    classifier  (N, classes) logits; pushed toward a target class
    realness    (N,) one "real" logit (a GAN discriminator); no classes

Every source and referee goes through the kind's methods (the score to ascend, the
probability reported as proxy_prob, the per-sample read-out, the selection scores), so a
new kind, for example a density model, is one class registered in `PROXY_KINDS`:

    from optbench.proxies import PROXY_KINDS, Proxy

    class LogDensityProxy(Proxy):
        kind = "density"
        ...

    PROXY_KINDS.register("density", LogDensityProxy)

A module declares its kind with a `proxy_kind` attribute (default "classifier"); a
manifest entry or a suite's model table may set it with "kind".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from optbench.models.fixed_batch import model_device
from optbench.registry import Registry

OBJECTIVES = ("logit", "log_prob")


class Proxy:
    """A frozen model with a kind. Calling it runs the module."""

    kind = ""
    has_classes = True      # targets are classes (False: a single "real" score)
    name = ""               # its catalog name, when it has one (detectors train its replicates)

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    # Each kind defines these four on the module's raw output `out`.
    def score(self, out: torch.Tensor, target: torch.Tensor | None, objective: str) -> torch.Tensor:
        """Per-sample value the optimizer ascends."""
        raise NotImplementedError

    def prob(self, out: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Per-sample probability reported as proxy_prob (and used for equal-proxy points)."""
        raise NotImplementedError

    def readout(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """prob, logit, hit (bool) per sample, and pred (the class it picks, or None)."""
        raise NotImplementedError

    def selection_scores(self, out: torch.Tensor, objective: str) -> torch.Tensor:
        """(targets, N) scores a selection source ranks a pool by, one row per target."""
        raise NotImplementedError

    def finite(self, out: torch.Tensor) -> torch.Tensor:
        """Per-sample: is the output finite (a non-finite one marks a diverged sample)."""
        return torch.isfinite(out.reshape(len(out), -1)).all(1)

    def targets(self, n: int, num_classes: int) -> torch.Tensor:
        """Balanced targets for n samples: class i mod C (zeros without classes)."""
        return torch.arange(n) % num_classes

    def score_and_prob(self, x: torch.Tensor, target: torch.Tensor | None,
                       objective: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The score and, from the same forward pass, the probability."""
        out = self.model(x)
        return self.score(out, target, objective), self.prob(out, target)


def class_readout(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample: the target class's probability and logit, the argmax class, and
    whether it is the target. The one read-out of a classifier, proxy or judge."""
    pred = logits.argmax(1)
    return {"prob": logits.softmax(1).gather(1, target[:, None]).squeeze(1),
            "logit": logits.gather(1, target[:, None]).squeeze(1), "pred": pred, "hit": pred == target}


class ClassifierProxy(Proxy):
    kind = "classifier"

    def score(self, out, target, objective):
        if objective == "log_prob":
            out = out.log_softmax(1)
        return out.gather(1, target[:, None]).squeeze(1)

    def prob(self, out, target):
        return out.softmax(1).gather(1, target[:, None]).squeeze(1)

    def readout(self, out, target):
        return class_readout(out, target)

    def selection_scores(self, out, objective):
        return (out.log_softmax(1) if objective == "log_prob" else out).T

    def finite(self, out):
        return torch.isfinite(out.amax(1))   # the largest logit: what the optimizer pushed


class RealnessProxy(Proxy):
    """A discriminator: D(x) is the logit of "real"; its probability is sigmoid(D(x))."""

    kind = "realness"
    has_classes = False

    def score(self, out, target, objective):
        return out if objective == "logit" else F.logsigmoid(out)

    def prob(self, out, target):
        return torch.sigmoid(out)

    def readout(self, out, target):
        return {"prob": torch.sigmoid(out), "logit": out, "hit": out > 0, "pred": None}

    def selection_scores(self, out, objective):
        return out[None]

    def targets(self, n, num_classes):
        return torch.zeros(n, dtype=torch.long)


PROXY_KINDS = Registry("proxy kind")
PROXY_KINDS.register("classifier", ClassifierProxy)
PROXY_KINDS.register("realness", RealnessProxy)


def kind_of(model: torch.nn.Module) -> str:
    return getattr(model, "proxy_kind", "classifier")


def as_proxy(model: torch.nn.Module | Proxy, kind: str | None = None) -> Proxy:
    """Wrap a module as the Proxy of its kind (`kind`, else its `proxy_kind` attribute)."""
    if isinstance(model, Proxy):
        return model
    return PROXY_KINDS.lookup(kind or kind_of(model), "kind")(model)
