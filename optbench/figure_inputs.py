"""What the report's figures need from models, computed at run time and stored beside
the numbers, so `optbench plot` and `report` read files and never load a model.

Per cell, `figures.safetensors` in the cell folder (written by runner.write_cell before
DONE hashes the folder, so it is part of the complete cell):
  proxy_regions      (GRID, GRID) uint8: the class the cell's proxy picks at the centre
                     of each pixel of the domain's box [lo, hi]^2; row i is y, column j
                     is x, from the low corner (imshow's origin="lower"). 2-d vector
                     domains with an exact referee (the gmm2 picture) and a classifier
                     proxy only.
  projection_levels  (L,) int64: the snapshot levels projected, the first level and the
                     last one with a finite proxy probability (projections_figure's).
  projections        (L, k, C, H, W) float16: the exact referee's `reconstruct` of those
                     levels' stored snapshots (domains whose gold projects: faces).
A cell with none of these still gets the file, with metadata only (40 bytes): its
presence tells the report the folder was written by a runner that stores figure inputs,
so a missing layer is one the figure does not need, not one to recompute.

Per suite, `generator_samples.safetensors` in the suite folder (written at the end of
every run): for each GAN-like generator of an image domain the cells use, its 100
unpressured samples (seed 5), float16, under the key "<domain>/<generator>"; the
report's samples_<generator>.png sheet draws them.

Everything here runs on the CPU: the arrays are for looking at, and a figure must not
depend on which accelerator a cell ran on."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load, save

from optbench.domains import get_domain
from optbench.errors import message_line
from optbench.storage import write_atomic

CELL_FILE = "figures.safetensors"
SUITE_FILE = "generator_samples.safetensors"
SCHEMA = "1"
GRID = 100            # pixels per side of the decision-region field: the picture looks the same as at 200
SHEET_N, SHEET_SEED = 100, 5   # the generator sheet: a 10 x 10 grid of fixed latents


# ---------------------------------------------------------------------------- per cell

def region_centres(lo: float, hi: float, grid: int = GRID) -> torch.Tensor:
    """(grid * grid, 2) pixel centres of the box [lo, hi]^2, row-major from the low
    corner: point i * grid + j is (x_j, y_i)."""
    c = lo + (torch.arange(grid, dtype=torch.float64) + 0.5) * (hi - lo) / grid
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1).float()


def cell_proxy_model(domain: str, proxy: str, proxy_training: str, seed: int):
    """The proxy a cell pushed against, on the CPU, as runner.cell_proxy picks it: the
    seed's replicate of its recipe, or the catalog's model."""
    if proxy_training == "per_seed":
        from optbench.models.checkpoints import model_kind
        from optbench.proxies import as_proxy
        from optbench.training.replicates import load_replicate
        model, _ = load_replicate(domain, proxy, seed, "cpu")
        return as_proxy(model, model_kind(domain, proxy))
    from optbench.referees import load_proxy
    return load_proxy(domain, proxy, "cpu")


def proxy_regions(domain: str, proxy: str, proxy_training: str, seed: int,
                  grid: int = GRID) -> torch.Tensor | None:
    """The cell proxy's argmax class over the domain's box, (grid, grid) uint8; None
    where the proxy has no classes (a discriminator)."""
    p = cell_proxy_model(domain, proxy, proxy_training, seed)
    if not p.has_classes:
        return None
    lo, hi = get_domain(domain).bounds
    with torch.no_grad():
        out = p(region_centres(lo, hi, grid))
    if out.dim() != 2 or out.shape[1] > 255:
        return None
    return out.argmax(1).to(torch.uint8).reshape(grid, grid)


def projected_levels(rows: list[dict]) -> list[int]:
    """The first level and the last with a finite proxy probability (once if the same)."""
    last = max((i for i, r in enumerate(rows) if math.isfinite(r.get("proxy_prob", math.nan))), default=0)
    return sorted({0, last})


def cell_figures(domain: str, proxy: str, proxy_training: str, seed: int,
                 snapshots: torch.Tensor, rows: list[dict]) -> dict[str, torch.Tensor]:
    """Every model-derived array the cell's figures need (module docstring); empty for
    a cell whose figures need none."""
    dom = get_domain(domain)
    gold = dom.gold()
    if gold is None:
        return {}
    out = {}
    if tuple(dom.shape) == (2,):
        regions = proxy_regions(domain, proxy, proxy_training, seed)
        if regions is not None:
            out["proxy_regions"] = regions
    if hasattr(gold, "reconstruct"):
        levels = projected_levels(rows)
        x = snapshots.detach().float().cpu()[levels]                     # (L, k, C, H, W)
        with torch.enable_grad():   # the projection descends on latents
            recon = gold.reconstruct(x.flatten(0, 1)).detach().reshape(x.shape)
        out["projection_levels"] = torch.tensor(levels, dtype=torch.int64)
        out["projections"] = recon.to(torch.float16)
    return out


def write_cell_figures(result, folder: Path) -> None:
    """figures.safetensors for a computed cell (runner.CellResult) into `folder`."""
    spec = result.spec
    tensors = cell_figures(spec.domain, spec.proxy, spec.proxy_training, spec.seed,
                           result.snapshots, result.rows)
    meta = {"schema": SCHEMA}
    if "proxy_regions" in tensors:
        meta |= {"regions_bounds": json.dumps(list(get_domain(spec.domain).bounds)), "regions_proxy": spec.proxy}
    (Path(folder) / CELL_FILE).write_bytes(save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))


def read_cell_figures(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """(tensors, metadata) of a cell folder's figures.safetensors; None when the folder
    has none (written before figure inputs were stored)."""
    path = Path(folder) / CELL_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except Exception as e:   # safetensors raises its own error type for a damaged file
        raise ValueError(f"{path}: not a readable safetensors file ({message_line(e)})") from None


# ---------------------------------------------------------------------------- per suite

def generator_samples(domain: str, generator: str) -> torch.Tensor | None:
    """SHEET_N unpressured samples of an image generator with a latent, float16; None
    for one without a latent (a diffusion model) or with vector outputs."""
    dom = get_domain(domain)
    if not dom.is_image:
        return None
    from optbench.models.checkpoints import load_model
    from optbench.models.gan import generate, sample_latents
    G = load_model(domain, generator, "cpu")
    if not hasattr(G, "latent_dim"):
        return None
    with torch.no_grad():
        x = generate(G, sample_latents(SHEET_N, SHEET_SEED, G.latent_dim))
    return x.to(torch.float16) if x.dim() == 4 else None


def write_suite_figures(suite_dir: Path, specs) -> None:
    """generator_samples.safetensors for the generators the cells use, one entry per
    (domain, generator) with a sheet; rewritten whole on every run (a second or so)."""
    stored = {}
    for domain, generator in sorted({(s.domain, str(s.settings_dict["generator"])) for s in specs
                                     if "generator" in s.settings_dict}):
        x = generator_samples(domain, generator)
        if x is not None:
            stored[f"{domain}/{generator}"] = x.contiguous()
    write_atomic(Path(suite_dir) / SUITE_FILE, save(stored, metadata={"schema": SCHEMA}))


def read_generator_samples(suite_dir: Path) -> dict[str, torch.Tensor] | None:
    """The suite's stored generator samples by "<domain>/<generator>"; None when the
    folder has no such file (written before they were stored)."""
    path = Path(suite_dir) / SUITE_FILE
    if not path.is_file():
        return None
    try:
        return load(path.read_bytes())
    except Exception as e:   # as read_cell_figures
        raise ValueError(f"{path}: not a readable safetensors file ({message_line(e)})") from None
