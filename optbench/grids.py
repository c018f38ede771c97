"""Image grids: one row per pressure level, one column per sample."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from optbench.text import unique_slugs  # noqa: E402

PAD = 2   # make_grid's padding between and around the tiles, in pixels


def grid_files(cells: list[dict]) -> dict[str, tuple[dict, str]]:
    """One grid per curve label, drawn from its first cell: label -> (cell, file name
    under plots/). Names are bounded and distinct whatever the labels (text.unique_slugs)."""
    first: dict[str, dict] = {}
    for c in cells:
        first.setdefault(c["spec"]["label"], c)
    slugs = unique_slugs(first)
    return {label: (c, f"grid_{slugs[label]}.png") for label, c in first.items()}


def tile_centres(count: int, size: int) -> list[float]:
    """Pixel coordinates of the middles of `count` tiles of `size` pixels along one axis
    of a make_grid image (imshow puts pixel i's centre at i)."""
    return [PAD + i * (size + PAD) + (size - 1) / 2 for i in range(count)]


def cell_grid(folder: Path, out: Path, title: str | None = None) -> None:
    """Draw a cell's stored snapshots, each row labelled with its level and the mean
    proxy and judge probabilities of the target class at that level."""
    snaps = load_file(str(folder / "snapshots.safetensors"))
    rows = json.loads((folder / "curve.json").read_text())["rows"]
    spec = json.loads((folder / "spec.json").read_text())
    x = snaps["snapshots"]                        # (L, K, C, H, W), or (L, K, d) for vectors
    if x.dim() == 3:
        return vector_grid(x, rows, spec, out, title)
    n_levels, k = x.shape[:2]
    lo, hi = spec.get("bounds", (0.0, 1.0))
    x = (torch.nan_to_num(x, nan=lo, posinf=hi, neginf=lo).clamp(lo, hi) - lo) / (hi - lo)
    grid = make_grid(x.reshape(-1, *x.shape[2:]), nrow=k, padding=PAD, pad_value=0.5)
    height, width = x.shape[-2:]
    tile_w = 0.62 * min(max(width / height, 0.25), 4.0)   # a row stays 0.62 in high
    fig, ax = plt.subplots(figsize=(tile_w * k + 3.4, 0.62 * n_levels + 0.9))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(tile_centres(n_levels, height))
    knob = spec["knob"]
    labels = [f"{knob} {r[knob]:g}  P {r['proxy_prob']:.2f}  J {r['judge_prob']:.2f}"
              for r in rows[:n_levels]]
    ax.set_yticklabels(labels + [""] * (n_levels - len(labels)), fontsize=7, family="monospace")
    ax.set_xticks(tile_centres(k, width))
    realness = spec.get("proxy_kind") == "realness"
    ax.set_xticklabels(["" if realness else f"→{int(t)}" for t in snaps["targets"]], fontsize=7)
    ax.tick_params(length=0)
    legend = ("P = mean sigmoid D(x); J = judges' top-class prob" if realness
              else "P/J = proxy/judge mean target prob; →t = target")
    ax.set_title(title or f"{spec['label']} (seed {spec['seed']})\nrows: pressure; {legend}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def vector_grid(x: torch.Tensor, rows: list[dict], spec: dict, out: Path, title: str | None) -> None:
    """A vector domain has no pictures: the kept samples' first two coordinates, one
    panel per pressure level, each sample keeping its colour across levels."""
    n_levels, k, d = x.shape
    cols = min(n_levels, 6)
    fig_rows = -(-n_levels // cols)
    fig, axes = plt.subplots(fig_rows, cols, figsize=(2.4 * cols, 2.4 * fig_rows + 0.6), squeeze=False)
    knob = spec["knob"]
    second = x[..., 1] if d > 1 else torch.zeros_like(x[..., 0])
    for i, ax in enumerate(axes.flat):
        if i >= n_levels:
            ax.axis("off")
            continue
        ax.scatter(x[i, :, 0], second[i], c=range(k), cmap="tab10", s=14)
        ax.set_xlim(float(x[..., 0].nan_to_num().min()) - 0.1, float(x[..., 0].nan_to_num().max()) + 0.1)
        ax.set_ylim(float(second.nan_to_num().min()) - 0.1, float(second.nan_to_num().max()) + 0.1)
        ax.set_title(f"{knob} {rows[i][knob]:g}  P {rows[i]['proxy_prob']:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or f"{spec['label']} (seed {spec['seed']}): coordinates 1 and 2 of each kept sample",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
