"""What a model file may be, and its identity: the sha256 of a file or of a diffusers
folder, and the refusal of pickle-based files (unpickling runs arbitrary code). Standard
library only: a domain checks the models it declares with these (domains/base.py)
without importing the checkpoint loader (models/checkpoints.py), which looks domains up."""
from __future__ import annotations

import hashlib
from pathlib import Path

from optbench.errors import CheckpointError


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Suffixes of pickle-based formats: never loaded (unpickling runs arbitrary code).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
CONVERT = ("convert it once with: python -c \"import torch; from safetensors.torch import save_file; "
           "save_file(torch.load('{f}', weights_only=True), '{stem}.safetensors')\" (a state dict), "
           "or export it with torch.jit.script(model).save('{stem}.ts') and give it as torchscript")


def refuse_pickle(file: Path, where: str = "") -> None:
    if file.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{where}{file}: a pickle-based file is never loaded (unpickling can run "
                              f"any code); " + CONVERT.format(f=file, stem=file.with_suffix('')))


def diffusers_files(folder: Path) -> list[Path]:
    """What a diffusers UNet folder's numbers depend on: its config, its safetensors
    weights and its scheduler config (when saved beside it), in a fixed order."""
    names = ["config.json", "diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
             "scheduler_config.json"]
    return [folder / n for n in names if (folder / n).is_file()]


def diffusers_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for f in diffusers_files(folder):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + sha256_of(f).encode())
    return h.hexdigest()
