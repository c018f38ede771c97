"""Checkpoints: safetensors files plus a `manifest.json` holding each file's sha256,
architecture, training recipe, test accuracy and library versions.

Only safetensors are ever read (never pickle), and a file whose sha256 differs from
its manifest entry is refused before it is parsed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from optbench.domains.base import count_of as _count
from optbench.errors import CheckpointError, first_line
from optbench.model_files import CONVERT, diffusers_sha256, refuse_pickle, sha256_of
from optbench.models.nets import ARCHITECTURES
from optbench.registry import PluginError

MANIFEST = "manifest.json"


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


def entry_kind(entry: dict) -> str | None:
    """What a catalog model can be as a proxy, the one place that says: its entry's
    "kind", else its class's `proxy_kind` (None: a generator, autoencoder or
    noise-aware classifier, never a proxy), else "classifier"."""
    if "kind" in entry:
        return entry["kind"]
    if "diffusers" in entry:
        return None   # a diffusion model is a generator
    if "arch" not in entry:
        return "classifier"   # TorchScript without a declared kind
    return getattr(ARCHITECTURES.lookup(entry["arch"], "arch"), "proxy_kind", "classifier")


def model_kind(domain, name: str, root: Path | None = None) -> str | None:
    """entry_kind of a domain's model."""
    return entry_kind(model_entry(domain, name, root))


def domain_table(domain) -> str:
    """Where a domain is declared, for messages: its suite table or its name."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    where = getattr(dom, "where", "")   # a suite's FileDomain: "domains.<name>"
    return where if where.startswith("domains.") else f"domain {dom.name!r}"


def model_table(domain, name: str, root: Path | None = None) -> str:
    """Where a model is declared, for messages: the domain's models table or its manifest."""
    from optbench.domains import get_domain
    dom = get_domain(domain)
    if name in dom.models:
        table = domain_table(dom)
        return f"{table}.models.{name}" if table.startswith("domains.") else f"{table}: models.{name}"
    return f"{checkpoint_dir(dom, root) / MANIFEST}: models.{name}"


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


def _sha(entry: dict, name: str) -> str:
    if not isinstance(entry.get("sha256"), str):
        raise CheckpointError(f"model {name!r}: its entry has no 'sha256'; every manifest entry records "
                              "its file's sha256 (optbench train writes it)")
    return entry["sha256"]


def _names(keys: list[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def state_dict_problem(expected: dict[str, tuple], found: dict[str, tuple]) -> str | None:
    """How a file's tensor shapes differ from a model's, in one line (torch's own
    message is one line per tensor), or None when they fit."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    other = [k for k in expected if k in found and tuple(expected[k]) != tuple(found[k])]
    parts = []
    if missing:
        parts.append(f"{_count(len(missing), 'tensor')} missing from the file ({_names(missing)})")
    if unexpected:
        parts.append(f"{_count(len(unexpected), 'tensor')} the model does not have ({_names(unexpected)})")
    if other:
        shapes = [f"{k} {tuple(found[k])} in the file, {tuple(expected[k])} in the model" for k in other[:2]]
        parts.append(f"{_count(len(other), 'tensor')} of another shape ({'; '.join(shapes)}"
                     f"{f' and {len(other) - 2} more' if len(other) > 2 else ''})")
    return "; ".join(parts) or None


def _not_safetensors_fix(file: Path) -> str:
    """What a file that is not safetensors looks like, from its first bytes, and the fix."""
    with open(file, "rb") as f:
        head = f.read(4)
    resave = "save it again with safetensors.torch.save_file(model.state_dict(), path)"
    if not head:
        return f"it is empty; {resave}"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return ("it is a pickle, as torch.save writes (never loaded); "
                + CONVERT.format(f=file, stem=file.with_suffix('')))
    return f"a truncated or damaged copy, or another format; copy it again or {resave}"


def read_safetensors(file: Path, header_only: bool = False) -> dict[str, torch.Tensor] | None:
    """A safetensors file's tensors (or, `header_only`, just a check of its header), or
    one line saying why it is not one (safetensors reads a header and raw numbers only:
    nothing in it is ever executed)."""
    from safetensors import SafetensorError, safe_open
    try:
        if header_only:
            with safe_open(str(file), "pt") as f:
                f.keys()
            return None
        return load_file(str(file))
    except SafetensorError as e:
        raise CheckpointError(f"{file}: not a safetensors file ({str(e).strip()}): "
                              f"{_not_safetensors_fix(file)}") from None


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], file: Path, arch: str) -> None:
    """load_state_dict(strict=True), with a mismatch said in one line."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problem = state_dict_problem(expected, {k: tuple(v.shape) for k, v in tensors.items()})
    if problem:
        raise CheckpointError(f"{file}: the weights do not fit arch {arch!r} as built from its arch_kwargs: "
                              f"{problem}; check arch and arch_kwargs, or save this architecture's state_dict()")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:   # a module's own loading hooks
        raise CheckpointError(f"{file}: loading the weights into {arch!r} failed: {first_line(e)}") from None


def _allowed_kwargs(cls) -> tuple[list[str], bool]:
    """The keyword arguments a constructor takes, and whether it takes any (**kwargs)."""
    import inspect
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):   # a builtin without a signature
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def build_checked(arch: str, kwargs, file: Path) -> torch.nn.Module:
    """`build(arch, **kwargs)`, with a wrong import path, an unknown keyword argument or
    a failing constructor said in one line."""
    where = f"{file}: arch {arch!r}"
    try:
        cls = ARCHITECTURES.lookup(arch, "arch")
    except PluginError as e:
        raise CheckpointError(f"{file}: {e}") from None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: arch_kwargs: expected a table of keyword arguments, found "
                              f"{type(kwargs).__name__} {kwargs!r}")
    allowed, any_kwarg = _allowed_kwargs(cls)
    unknown = [k for k in kwargs if k not in allowed]
    if unknown and not any_kwarg:
        raise CheckpointError(f"{where}: arch_kwargs: unknown argument {unknown[0]!r}; allowed: "
                              f"{', '.join(allowed) or 'none'}")
    try:
        model = cls(**kwargs)
    except Exception as e:   # a user's constructor may raise anything
        raise CheckpointError(f"{where}: building it with arch_kwargs {kwargs} raised {first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(f"{where}: builds a {type(model).__name__}, not a torch.nn.Module")
    return model


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
        file = _verified(folder / entry["torchscript"], _sha(entry, name))
        model = load_torchscript(file)
    elif "diffusers" in entry:
        model = load_diffusers_unet(folder / entry["diffusers"], _sha(entry, name))
    else:
        if "file" not in entry or "arch" not in entry:
            raise CheckpointError(f"model {name!r}: its entry has no {'file' if 'file' not in entry else 'arch'!r}; "
                                  "expected 'arch' and 'file' (a safetensors state dict), 'torchscript', or "
                                  "'diffusers' (a folder)")
        file = folder / entry["file"]
        refuse_pickle(file)
        if file.suffix != ".safetensors":
            raise CheckpointError(f"{file}: only .safetensors checkpoints are loaded")
        _verified(file, _sha(entry, name))
        model = build_checked(entry["arch"], entry.get("arch_kwargs", {}), file)
        load_weights(model, read_safetensors(file), file, entry["arch"])
    model.eval()
    for p in model.parameters():   # (a ScriptModule has no requires_grad_ of its own)
        p.requires_grad_(False)
    return model.to(device) if device is not None else model


SAVE_UNET = ("UNet2DModel.save_pretrained(folder, safe_serialization=True) writes config.json and "
             "diffusion_pytorch_model.safetensors")
CONVERT_UNET = ("convert it once with: python -c \"from diffusers import UNet2DModel; "
                "UNet2DModel.from_pretrained('{f}', use_safetensors=False).save_pretrained('{f}', "
                "safe_serialization=True)\" (this unpickles: only for a file you trust)")


def _contents(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "") if names else "nothing"


def _unet_config(folder: Path) -> dict:
    """A diffusers folder's config.json, checked to be a UNet2DModel's."""
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{folder}: not a diffusers model folder: no config.json (found {_contents(folder)}); "
                              f"expected what {SAVE_UNET}")
    try:
        config = json.loads(file.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not a valid JSON config ({first_line(e)}); expected what {SAVE_UNET}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object of UNet2DModel settings, found {type(config).__name__}")
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise CheckpointError(f"{file}: a {name} config; expected a UNet2DModel (called as "
                              "unet(x_t, t, class_labels=y).sample)")
    return config


def _unet_weights(folder: Path) -> Path:
    file = folder / "diffusion_pytorch_model.safetensors"
    if file.is_file():
        return file
    pickled = folder / "diffusion_pytorch_model.bin"
    if pickled.is_file():
        raise CheckpointError(f"{pickled}: a pickle-based file is never loaded (unpickling can run any code); "
                              + CONVERT_UNET.format(f=folder))
    raise CheckpointError(f"{folder}: no weights: expected diffusion_pytorch_model.safetensors beside config.json "
                          f"(found {_contents(folder)}); {SAVE_UNET}")


def _unet_mismatch(config: dict, weights: Path) -> str:
    """How config.json and the weights disagree, from the model the config builds."""
    from diffusers import UNet2DModel
    from safetensors import safe_open
    try:
        expected = {k: tuple(v.shape) for k, v in UNet2DModel.from_config(config).state_dict().items()}
    except Exception as e:   # a config diffusers cannot build
        return f"config.json does not build a UNet2DModel: {first_line(e)}"
    with safe_open(str(weights), "pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return state_dict_problem(expected, found) or "they do not load together"


def load_diffusers_unet(folder: Path, sha256: str) -> torch.nn.Module:
    """A local diffusers `UNet2DModel.from_pretrained` folder, safetensors only (a folder
    with only diffusion_pytorch_model.bin is refused), with its scheduler config attached
    as `scheduler_config` for guidance (models/diffusion.py's when the folder has none).
    config.json and the weights must fit each other exactly: diffusers would otherwise
    drop unused tensors and initialize missing ones at random."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; expected a diffusers model folder ({SAVE_UNET})")
    config = _unet_config(folder)
    weights = _unet_weights(folder)
    actual = diffusers_sha256(folder)
    if actual != sha256:
        raise CheckpointError(f"checksum mismatch for {folder}: expected {sha256[:16]}..., the folder has "
                              f"{actual[:16]}...; refusing to load it")
    read_safetensors(weights, header_only=True)   # before diffusers reads it
    from diffusers import UNet2DModel
    from diffusers.utils import logging as dlog
    level = dlog.get_verbosity()
    dlog.set_verbosity_error()   # its notes on accelerate and ignored keys are ours to say
    try:
        unet, info = UNet2DModel.from_pretrained(str(folder), use_safetensors=True, output_loading_info=True)
    except Exception:
        raise CheckpointError(f"{folder}: config.json and the weights disagree: {_unet_mismatch(config, weights)}; "
                              f"save both from one model ({SAVE_UNET})") from None
    finally:
        dlog.set_verbosity(level)
    problem = state_dict_problem({k: () for k in info.get("missing_keys", [])},
                                 {k: () for k in info.get("unexpected_keys", [])})
    if problem:
        raise CheckpointError(f"{folder}: config.json and the weights disagree: {problem}; save both from one "
                              f"model ({SAVE_UNET})")
    for name in ("scheduler/scheduler_config.json", "scheduler_config.json"):
        if (folder / name).is_file():
            try:
                unet.scheduler_config = json.loads((folder / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{folder / name}: not a valid JSON scheduler config ({first_line(e)})") from None
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
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except Exception as e:   # a damaged archive: torch's message runs to many lines
        raise CheckpointError(f"{file}: a damaged TorchScript archive ({first_line(e)}); save it again "
                              "with torch.jit.script(model).save(...)") from None


def model_hash(domain, name: str, root: Path | None = None) -> str:
    return model_entry(domain, name, root)["sha256"]
