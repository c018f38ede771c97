"""The model a card measures: read from what the user gives (an importable class and
safetensors weights, a TorchScript file, or an nn.Module), checked, and given its
untrained control.

Checks, before any cell runs: the weights are safetensors (never a pickle), the model is
not one of the domain's referees (by sha256: a referee the optimizer has seen measures
nothing), and its output has the domain's shape (the suite's pre-flight check)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from optbench.card.battery import CONTROL_SUFFIX, CardModel
from optbench.domains import get_domain, referee_roles
from optbench.errors import CheckpointError
from optbench.model_files import refuse_pickle, sha256_of
from optbench.models.checkpoints import build_checked, catalog, load_weights, read_safetensors
from optbench.proxies import PROXY_KINDS

CONTROL_SEED = 0   # torch.manual_seed before the untrained control's constructor runs


def _module_arch(module: torch.nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_module(module: torch.nn.Module, folder: Path, name: str) -> Path:
    """An nn.Module's state_dict as `<folder>/<name>.safetensors` (the card's own copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(file))
    return file


def card_model(domain: str, folder: Path, *, name: str = "model", arch: str | None = None,
               weights: str | Path | None = None, arch_kwargs: dict | None = None,
               torchscript: str | Path | None = None, module: torch.nn.Module | None = None,
               kind: str | None = None, replicates: tuple[str | Path, ...] = ()) -> CardModel:
    """The CardModel for one of the three ways to give a model; writes the untrained
    control's weights (and an nn.Module's) into `folder`."""
    given = [w for w, v in (("--model/--weights", arch or weights), ("--torchscript", torchscript),
                            ("module", module)) if v is not None]
    if len(given) != 1:
        raise ValueError("give the model one way: --model module:Class with --weights file.safetensors, "
                         f"or --torchscript file.ts (got {' and '.join(given) or 'neither'})")
    arch_kwargs = dict(arch_kwargs or {})
    if module is not None:
        arch = _module_arch(module)
        weights = save_module(module, folder, name)
        kind = kind or getattr(module, "proxy_kind", None) or "classifier"
    if kind is not None and kind not in PROXY_KINDS:
        raise ValueError(f"--kind: unknown value {kind!r}; allowed: {', '.join(PROXY_KINDS)}")
    if torchscript is not None:
        if replicates:
            raise ValueError("--replicates: replicates are weight files of a class (--model with --weights); "
                             "a TorchScript model has none: give --model module:Class and --weights instead")
        file = _user_file(torchscript, "--torchscript")
        entry = {"torchscript": str(file), "kind": kind or "classifier"}
        return _checked(domain, CardModel(name, entry, entry["kind"], None,
                                          "a TorchScript model cannot be re-initialized; give "
                                          "--model module:Class and --weights for the untrained control"))
    if arch is None or weights is None:
        raise ValueError("--model and --weights go together: the class (module:Class) and its "
                         "state_dict in a safetensors file")
    file = _user_file(weights, "--weights")
    if file.suffix != ".safetensors":
        raise ValueError(f"--weights: {file} is not a .safetensors file; give the class's state_dict() saved "
                         "with safetensors.torch.save_file, or a TorchScript archive with --torchscript")
    built = build_checked(arch, arch_kwargs, file)   # the class imports and takes the kwargs
    kind = kind or getattr(built, "proxy_kind", None) or "classifier"
    entry = {"arch": arch, "arch_kwargs": arch_kwargs, "file": str(file), "kind": kind}
    torch.manual_seed(CONTROL_SEED)
    untrained = build_checked(arch, arch_kwargs, file)
    control_file = save_module(untrained, folder, name + CONTROL_SUFFIX)
    control = {**entry, "file": str(control_file), "role": "control"}
    reps = []
    for r in replicates:
        rf = _user_file(r, "--replicates")
        try:   # the same class must take every replicate's weights, before any cell runs
            load_weights(build_checked(arch, arch_kwargs, rf), read_safetensors(rf), rf, arch)
        except CheckpointError as e:
            raise CheckpointError(f"--replicates: {e}") from None
        _not_a_referee(domain, rf, "--replicates")
        reps.append(str(rf))
    return _checked(domain, CardModel(name, entry, kind, control, "", tuple(reps)))


def _user_file(path: str | Path, flag: str) -> Path:
    """A file the user named: absolute, never a pickle, present."""
    file = Path(path).expanduser().resolve()
    refuse_pickle(file, f"{flag}: ")
    if not file.is_file():
        raise ValueError(f"{flag}: no such file {file}")
    return file


def _not_a_referee(domain: str, file: Path, flag: str) -> str:
    """The file's sha256; refused if it is one of the domain's referees'."""
    digest = sha256_of(file)
    models = catalog(domain)
    for referee, roles in referee_roles(domain).items():
        if models.get(referee, {}).get("sha256") == digest:
            raise CheckpointError(f"{flag}: {file}: its sha256 is that of {referee!r}, a referee of domain "
                                  f"{get_domain(domain).name!r} ({', '.join(roles)}); the optimizer must "
                                  "never see a model that judges its outputs")
    return digest


def _checked(domain: str, model: CardModel) -> CardModel:
    """Refuse a model that is one of the domain's referees, by sha256."""
    flag = "--weights" if "file" in model.entry else "--torchscript"
    digest = _not_a_referee(domain, Path(model.entry.get("file") or model.entry["torchscript"]), flag)
    return CardModel(model.name, {**model.entry, "sha256": digest}, model.kind, model.control,
                     model.why_no_control, model.replicates)


@torch.no_grad()
def test_accuracy(domain: str, net: torch.nn.Module, kind: str) -> dict:
    """A classifier's accuracy on the domain's test split; a discriminator's share of
    real test samples it calls real (sigmoid > 0.5)."""
    x, y = get_domain(domain).load_split("test")
    out = torch.cat([net(x[i:i + 256]) for i in range(0, len(x), 256)])
    if kind == "realness":
        return {"real_called_real": float((out.reshape(-1) > 0).double().mean()), "n": len(x)}
    return {"test_accuracy": float((out.argmax(1) == y).double().mean()), "n": len(x)}


def parameter_count(net: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


