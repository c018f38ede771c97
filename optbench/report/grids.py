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
    grid = make_grid(x.reshape(-1, *x.shape[2:]), nrow=k, padding=2, pad_value=0.5)
    fig_h = 0.62 * n_levels + 0.9
    fig, ax = plt.subplots(figsize=(0.62 * k + 3.4, fig_h))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = x.shape[-1] + 2
    ax.set_yticks([cell * i + cell / 2 for i in range(n_levels)])
    knob = spec["knob"]
    ax.set_yticklabels([f"{knob} {r[knob]:g}  P {r['proxy_prob']:.2f}  J {r['judge_prob']:.2f}"
                        for r in rows], fontsize=7, family="monospace")
    ax.set_xticks([cell * j + cell / 2 for j in range(k)])
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
