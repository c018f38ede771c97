"""Architectures, training recipes and the checkpoint manifest."""
from optbench.models.checkpoints import CheckpointError, load_model, read_manifest
from optbench.models.nets import build

__all__ = ["CheckpointError", "build", "load_model", "read_manifest"]
