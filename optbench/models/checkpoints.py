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

from optbench.domains.base import PACKAGED_CHECKPOINTS as PACKAGED  # noqa: F401  (tests read it)
from optbench.models.nets import build

MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dir(domain, root: Path | None = None) -> Path:
    """`root`/<name> when given (a training run's output), else the domain's own folder
    (the package's checkpoints/<name> for the shipped domains)."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    return Path(root) / dom.name if root else dom.checkpoint_dir


def read_manifest(domain, root: Path | None = None) -> dict:
    from optbench.domains import get_domain
    domain = get_domain(domain).name
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


def save_model(model: torch.nn.Module, domain, name: str, entry: dict,
               root: Path | None = None) -> dict:
    """Write `<name>.safetensors` and record it (with its sha256) in the manifest.
    `entry` must hold `arch` and `arch_kwargs`; anything else is kept as metadata."""
    from optbench.domains import get_domain
    domain = get_domain(domain).name
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


# Suffixes of pickle-based formats: never loaded (unpickling runs arbitrary code).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
CONVERT = ("convert it once with: python -c \"import torch; from safetensors.torch import save_file; "
           "save_file(torch.load('{f}', weights_only=True), '{stem}.safetensors')\" (a state dict), "
           "or export it with torch.jit.script(model).save('{stem}.ts') and give it as torchscript")


def refuse_pickle(file: Path, where: str = "") -> None:
    if file.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{where}{file}: a pickle-based file is never loaded (unpickling can run "
                              f"any code); " + CONVERT.format(f=file, stem=file.with_suffix('')))


def catalog(domain, root: Path | None = None) -> dict[str, dict]:
    """Every model of the domain by name: its manifest's entries, then the models the
    domain declares itself (`Domain.models`, e.g. from a suite file's [models] tables).
    A declared model's sha256 is computed from its file when not given."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    folder = checkpoint_dir(dom, root)
    has_manifest = (folder / MANIFEST).exists()
    models = dict(read_manifest(dom, root)["models"]) if has_manifest or not dom.models else {}
    return {**models, **dom.declared_models()}


def model_entry(domain, name: str, root: Path | None = None) -> dict:
    models = catalog(domain, root)
    if name not in models:
        from optbench.domains import get_domain
        raise CheckpointError(f"no model {name!r} for domain {get_domain(domain).name!r}; "
                              f"allowed: {', '.join(sorted(models))}")
    return models[name]


def _verified(file: Path, sha256: str) -> Path:
    refuse_pickle(file)
    if not file.exists():
        raise CheckpointError(f"checkpoint file missing: {file}")
    actual = sha256_of(file)
    if actual != sha256:
        raise CheckpointError(f"checksum mismatch for {file}: manifest says sha256 "
                              f"{sha256[:16]}..., file has {actual[:16]}...; "
                              "the file is corrupted or was replaced; refusing to load it")
    return file


def load_model(domain, name: str, device: str | torch.device | None = None,
               root: Path | None = None) -> torch.nn.Module:
    """Verify the checksum, then build the architecture and load its weights (eval mode,
    gradients off for parameters). An entry is either an architecture (a registered
    name or an import path "module:Class") with arch_kwargs and a safetensors file, or a
    TorchScript file ("torchscript"). Paths are relative to the domain's checkpoint
    folder unless absolute."""
    entry = model_entry(domain, name, root)
    folder = checkpoint_dir(domain, root)
    if "torchscript" in entry:
        file = _verified(folder / entry["torchscript"], entry["sha256"])
        model = load_torchscript(file)
    elif "diffusers" in entry:
        model = load_diffusers_unet(folder / entry["diffusers"], entry["sha256"])
    else:
        file = folder / entry["file"]
        refuse_pickle(file)
        if file.suffix != ".safetensors":
            raise CheckpointError(f"{file}: only .safetensors checkpoints are loaded")
        _verified(file, entry["sha256"])
        model = build(entry["arch"], **entry.get("arch_kwargs", {}))
        model.load_state_dict(load_file(str(file)), strict=True)
    model.eval()
    for p in model.parameters():   # (a ScriptModule has no requires_grad_ of its own)
        p.requires_grad_(False)
    return model.to(device) if device is not None else model


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


def load_diffusers_unet(folder: Path, sha256: str) -> torch.nn.Module:
    """A local diffusers `UNet2DModel.from_pretrained` folder, safetensors only (a folder
    with only diffusion_pytorch_model.bin is refused), with its scheduler config attached
    as `scheduler_config` for guidance (models/diffusion.py's when the folder has none)."""
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a diffusers model folder (no config.json)")
    if not (folder / "diffusion_pytorch_model.safetensors").is_file():
        refuse_pickle(folder / "diffusion_pytorch_model.bin")
        raise CheckpointError(f"{folder}: no diffusion_pytorch_model.safetensors")
    actual = diffusers_sha256(folder)
    if actual != sha256:
        raise CheckpointError(f"checksum mismatch for {folder}: expected {sha256[:16]}..., the folder has "
                              f"{actual[:16]}...; refusing to load it")
    from diffusers import UNet2DModel
    unet = UNet2DModel.from_pretrained(str(folder), use_safetensors=True)
    for name in ("scheduler/scheduler_config.json", "scheduler_config.json"):
        if (folder / name).is_file():
            unet.scheduler_config = json.loads((folder / name).read_text())
            break
    return unet


def load_torchscript(file: Path) -> torch.nn.Module:
    """A TorchScript archive (torch.jit.save): a zip holding the model's code. A plain
    torch.save pickle is refused, whatever its name."""
    import zipfile
    try:
        names = zipfile.ZipFile(file).namelist()
    except zipfile.BadZipFile:
        names = []
    if not any("/code/" in n for n in names):
        raise CheckpointError(f"{file}: not a TorchScript archive (torch.jit.save); " +
                              CONVERT.format(f=file, stem=file.with_suffix('')))
    return torch.jit.load(str(file), map_location="cpu")


def model_hash(domain, name: str, root: Path | None = None) -> str:
    return model_entry(domain, name, root)["sha256"]
