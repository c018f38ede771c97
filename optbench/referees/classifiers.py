"""Classifier read-outs: a model's probability and logit for the target class."""
from __future__ import annotations

import torch

from optbench.models.fixed_batch import in_batches, model_device


def logits_of(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return in_batches(model, x, batch, model_device(model))
