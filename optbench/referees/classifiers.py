"""Classifier read-outs: a model's probability and logit for the target class."""
from __future__ import annotations

import torch

from optbench.models.fixed_batch import in_batches


def logits_of(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return in_batches(model, x, batch, next(model.parameters()).device)


def target_readout(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample target probability, target logit and argmax class."""
    return {"prob": logits.softmax(1).gather(1, target[:, None]).squeeze(1),
            "logit": logits.gather(1, target[:, None]).squeeze(1),
            "pred": logits.argmax(1)}
