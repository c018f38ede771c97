"""Checkpoints: safetensors files plus a `manifest.json` holding each file's sha256,
architecture, training recipe, test accuracy and library versions.

Only safetensors are ever read (never pickle), and a file whose sha256 differs from
its manifest entry is refused before it is parsed."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from optbench.models.nets import build

PACKAGED = Path(__file__).resolve().parent.parent / "checkpoints"
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dir(domain: str, root: Path | None = None) -> Path:
    return Path(root or PACKAGED) / domain


def read_manifest(domain: str, root: Path | None = None) -> dict:
    path = checkpoint_dir(domain, root) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"no checkpoint manifest at {path}; run `optbench train {domain}`")
    fix = f"reinstall optbench or run `optbench train {domain}`"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not a valid manifest (line {e.lineno}, column {e.colno}: "
                              f"{e.msg}); {fix}") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not a valid manifest (byte 0x{e.object[e.start]:02x} at "
                              f"position {e.start} is not UTF-8); {fix}") from None
    # Every reader indexes manifest["models"][name][...]: check the shape once, here.
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise CheckpointError(f"{path}: field 'models' is missing or not a table of models; {fix}")
    return manifest


def save_model(model: torch.nn.Module, domain: str, name: str, entry: dict,
               root: Path | None = None) -> dict:
    """Write `<name>.safetensors` and record it (with its sha256) in the manifest.
    `entry` must hold `arch` and `arch_kwargs`; anything else is kept as metadata."""
    folder = checkpoint_dir(domain, root)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = file.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"arch": entry["arch"]})
    os.replace(tmp, file)
    manifest_path = folder / MANIFEST
    manifest = read_manifest(domain, root) if manifest_path.exists() else {
        "schema": 1, "domain": domain, "models": {}}
    manifest["models"][name] = {**entry, "file": file.name, "sha256": sha256_of(file)}
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return manifest["models"][name]


def load_model(domain: str, name: str, device: str | torch.device | None = None,
               root: Path | None = None) -> torch.nn.Module:
    """Verify the checksum, then build the architecture and load its weights (eval mode,
    gradients off for parameters)."""
    manifest = read_manifest(domain, root)
    if name not in manifest["models"]:
        raise CheckpointError(f"no model {name!r} for domain {domain!r}; "
                              f"allowed: {', '.join(sorted(manifest['models']))}")
    entry = manifest["models"][name]
    file = checkpoint_dir(domain, root) / entry["file"]
    if file.suffix != ".safetensors":
        raise CheckpointError(f"{file}: only .safetensors checkpoints are loaded")
    if not file.exists():
        raise CheckpointError(f"checkpoint file missing: {file}")
    actual = sha256_of(file)
    if actual != entry["sha256"]:
        raise CheckpointError(f"checksum mismatch for {file}: manifest says sha256 "
                              f"{entry['sha256'][:16]}..., file has {actual[:16]}...; "
                              "the file is corrupted or was replaced; refusing to load it")
    model = build(entry["arch"], **entry["arch_kwargs"])
    model.load_state_dict(load_file(str(file)), strict=True)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def model_hash(domain: str, name: str, root: Path | None = None) -> str:
    return read_manifest(domain, root)["models"][name]["sha256"]
