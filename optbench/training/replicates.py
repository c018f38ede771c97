"""Proxy replicates: the shipped recipe of a proxy, trained again with another seed.

Seeds of a suite change the start digits and targets; with `proxy_training =
"per_seed"` seed s also gets its own proxy, trained by the same recipe with training
seed derived from s, so an interval over seeds includes the proxy's training variance.
Replicates are trained on the fly (seconds to two minutes each at one thread) and kept
in the user cache as safetensors with a sha256 beside them; the training time is
recorded in the cell's meta.json the first time."""
from __future__ import annotations

import time
from dataclasses import asdict, replace

import torch
from safetensors.torch import load_file, save_file

from optbench.cache import cache_dir, entry_lock, key_hash
from optbench.model_files import sha256_of
from optbench.models.checkpoints import catalog
from optbench.errors import CheckpointError
from optbench.models.nets import build
from optbench.notices import notice

REPLICATE_VERSION = 1        # bump when replicate training changes
SEED_STRIDE = 1000           # replicate r of a recipe with seed k trains with k + 1000 (r + 1)


def replicate_seed(recipe_seed: int, replicate: int) -> int:
    return recipe_seed + SEED_STRIDE * (replicate + 1)


def _train(domain: str, name: str, replicate: int) -> torch.nn.Module:
    from optbench.models.nets import ProxyEnsemble
    from optbench.models.recipes import ENSEMBLE_PROXIES, ENSEMBLE_SEEDS, ensemble_kwargs, recipes_for
    from optbench.training.classifiers import train_one   # a replicate is trained now, once
    recipes = recipes_for(domain)
    quiet = lambda *a, **k: None  # noqa: E731
    if name in recipes:
        r = recipes[name]
        return train_one(domain, name, replace(r, seed=replicate_seed(r.seed, replicate)), quiet)
    if name in ENSEMBLE_PROXIES:
        base = recipes["proxy_cnn"]
        members = [train_one(domain, name, replace(base, seed=replicate_seed(s, replicate)), quiet)
                   for s in ENSEMBLE_SEEDS]
        model = ProxyEnsemble(**ensemble_kwargs(base, len(members), ENSEMBLE_PROXIES[name]))
        for m, trained in zip(model.members, members):
            m.load_state_dict(trained.state_dict())
        model._train_seconds = sum(m._train_seconds for m in members)
        return model.eval()
    raise CheckpointError(f"proxy {name!r} has no training recipe in domain {domain!r}, so it "
                          "cannot be replicated; use proxy_training = 'shipped'")


def _key(domain: str, name: str, replicate: int) -> dict:
    from optbench.models.recipes import recipes_for
    recipe = recipes_for(domain).get(name)
    return {"domain": domain, "name": name, "replicate": replicate, "version": REPLICATE_VERSION,
            "recipe": asdict(recipe) if recipe else None,
            "torch": ".".join(torch.__version__.split(".")[:2])}


def _path(folder, domain: str, name: str, replicate: int):
    return folder / f"{name}-r{replicate}-{key_hash(_key(domain, name, replicate))}.safetensors"


def _is_stored(path) -> bool:
    sha = path.with_name(path.name + ".sha256")
    return path.exists() and sha.exists() and sha.read_text().strip() == sha256_of(path)


def replicate_is_cached(domain: str, name: str, replicate: int) -> bool:
    """Whether the replicate is in the cache already (loading it trains nothing). Reads
    only: creates no folder."""
    from optbench.cache import cache_root
    return _is_stored(_path(cache_root() / "replicates" / domain, domain, name, replicate))


def training_estimate(domain: str, name: str) -> tuple[float, str] | None:
    """About how long a replicate of proxy `name` takes to train, and whence: the median
    of this machine's earlier replicates of it ("measured here", from the seconds files
    beside the cached weights), else the shipped model's train_seconds in its manifest
    ("as the shipped model took", one thread on the machine that trained it). Reads only."""
    import statistics
    from optbench.cache import cache_root
    times = []
    for f in (cache_root() / "replicates" / domain).glob(f"{name}-r*.seconds"):
        try:
            times.append(float(f.read_text()))
        except (OSError, ValueError):
            continue
    if times:
        return statistics.median(times), "measured here"
    seconds = catalog(domain).get(name, {}).get("train_seconds")
    return (float(seconds), "as the shipped model took") if isinstance(seconds, (int, float)) else None


def load_replicate(domain: str, name: str, replicate: int,
                   device: str | torch.device | None = None) -> tuple[torch.nn.Module, float]:
    """Replicate `replicate` of proxy `name`, and the seconds spent training it now (0
    when it came from the cache). Eval mode, parameters frozen."""
    entry = catalog(domain)[name]
    path = _path(cache_dir(f"replicates/{domain}"), domain, name, replicate)
    sha = path.with_name(path.name + ".sha256")
    seconds = 0.0
    with entry_lock(path):
        if not _is_stored(path):
            estimate = training_estimate(domain, name)
            notice(f"training proxy replicate {replicate} of {domain}:{name} ("
                   + (f"about {estimate[0]:.0f} s, {estimate[1]}; " if estimate else "")
                   + "once: then cached)")
            t0 = time.time()
            with torch.random.fork_rng():   # training seeds the global RNG: leave it as it was
                trained = _train(domain, name, replicate)
            seconds = time.time() - t0
            tmp = path.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in trained.state_dict().items()}, str(tmp))
            tmp.replace(path)
            sha.write_text(sha256_of(path) + "\n")
            path.with_suffix(".seconds").write_text(f"{seconds:.2f}\n")   # for training_estimate
    model = build(entry["arch"], **entry["arch_kwargs"])
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval().requires_grad_(False)
    return (model.to(device) if device is not None else model), seconds


def replicate_hash(domain: str, name: str, replicate: int) -> str:
    """The cache key of a replicate: what its weights are a function of (its sha256 can
    differ across CPUs, so cell ids use the recipe, not the weights)."""
    return key_hash(_key(domain, name, replicate))
