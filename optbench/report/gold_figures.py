"""Figures of the ground-truth domains: where outputs go on the exact density.

In d = 2 the coordinates are drawn as they are; in higher d, on the first two principal
axes of the reference split (the data's own plane), with the reference points behind.

These figures read files and the domain's data only, never a model: the cells' stored
snapshots, the reference split, and the exact law of a mixture (its log-density and the
typical set's edge, computed from the mixture's own parameters). What a figure needs
from a model (the proxy's decision regions, the exact referee's projections) the runner
stored in each cell's figures.safetensors (optbench/figure_inputs.py); a folder written
before that is drawn without those layers, with a note to rerun the suite with --force."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from optbench.domains import get_domain  # noqa: E402
from optbench.figure_inputs import projected_levels, read_cell_figures  # noqa: E402

GRID = 200
RERUN = "rerun the suite with --force to add them"
REGIONS_MISSING = f"the proxy's decision regions are not stored in this folder; {RERUN}"
PROJECTIONS_MISSING = f"the projections are not stored in this folder; {RERUN}"


def snapshots(suite_dir: Path, cell: dict) -> tuple[torch.Tensor, list]:
    """(levels, k, d) kept samples of a cell and its knob values."""
    t = load_file(str(Path(suite_dir) / cell["spec"]["cell_id"] / "snapshots.safetensors"))
    return t["snapshots"].float(), t["levels"].tolist()


class Plane:
    """Maps a domain's vectors to the two drawn coordinates."""

    def __init__(self, domain: str):
        self.dom = get_domain(domain)
        ref, _ = self.dom.load_split("reference")
        self.ref = ref.double()
        if self.dom.shape[0] == 2:
            self.mean, self.axes = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        else:
            self.mean = self.ref.mean(0)
            _, _, v = torch.linalg.svd(self.ref - self.mean, full_matrices=False)
            self.axes = v[:2].T

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return ((x.double().reshape(len(x), -1) - self.mean) @ self.axes).numpy()

    def background(self, ax) -> None:
        """Log-density contours in d = 2; the reference points' projection otherwise."""
        if self.dom.shape[0] == 2:
            g = torch.linspace(-1, 1, GRID, dtype=torch.float64)
            xx, yy = torch.meshgrid(g, g, indexing="xy")
            lp = self.dom.mixture.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).reshape(GRID, GRID)
            ax.contourf(xx, yy, lp.clamp_min(-12), levels=14, cmap="Greys", alpha=0.55)
            lo, hi = self.dom.gold().bounds
            ax.contour(xx, yy, lp, levels=[lo], colors="k", linewidths=0.8, linestyles="--")
        else:
            p = self(self.ref)
            ax.scatter(p[:, 0], p[:, 1], s=2, c="0.75", lw=0)


def misses_figure(suite_dir: Path, domain: str, found: list, out: Path) -> None:
    """Levels where the truth says "off the data" and KID says "on": their kept samples
    (vectors drawn on the data's plane; images shown as they are)."""
    if get_domain(domain).is_image:
        return _image_misses(suite_dir, domain, found, out)
    plane = Plane(domain)
    cols = max(1, min(3, len(found)))
    rows = max(1, math.ceil(len(found) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (cell, i, row) in zip(axes.flat, found):
        ax.axis("on")
        plane.background(ax)
        x, levels = snapshots(suite_dir, cell)
        p = plane(x[i])
        ax.scatter(p[:, 0], p[:, 1], c="tab:red", marker="x", s=30)
        knob = cell["spec"]["knob"]
        null = cell["curve"]["null"]
        ax.set_title(f"{cell['spec']['label']} (seed {cell['spec']['seed']})\n{knob} {row[knob]:g}: "
                     f"atypical {row['gold_atypical']:.2f} (null q99 {null['gold_atypical']['q99']:.2f}); "
                     f"KID {row['kid']:.3f} (q99 {null['kid']['q99']:.3f})", fontsize=7)
        ax.tick_params(labelsize=6)
    if not found:
        axes.flat[0].text(0.5, 0.5, "no level where the truth departs and KID does not", ha="center")
    where = "coordinates" if plane.dom.shape[0] == 2 else "first two principal axes of the reference set (grey)"
    fig.suptitle(f"{domain}: truth says off the data (red x: the level's kept samples), KID says on; {where}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _image_misses(suite_dir: Path, domain: str, found: list, out: Path) -> None:
    fig, axes = plt.subplots(max(1, len(found)), 1, figsize=(10, 1.6 * max(1, len(found))), squeeze=False)
    for ax in axes[:, 0]:
        ax.axis("off")
    for ax, (cell, i, row) in zip(axes[:, 0], found):
        x, _ = snapshots(suite_dir, cell)
        ax.imshow(torch.cat(list(x[i][:, 0]), 1).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        knob, null = cell["spec"]["knob"], cell["curve"]["null"]
        label, proxy = cell["spec"]["label"], cell["spec"]["proxy"]
        ax.set_title(f"{label}{'' if proxy in label else f' [{proxy}]'} (seed {cell['spec']['seed']}), {knob} "
                     f"{row[knob]:g}: off-manifold {row['gold_atypical']:.2f} (null q99 "
                     f"{null['gold_atypical']['q99']:.2f}); KID {row['kid']:.3f} (q99 {null['kid']['q99']:.3f})",
                     fontsize=7)
    fig.suptitle(f"{domain}: the truth says off the data, KID says on", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def picture(suite_dir: Path, cells: list[dict], domain: str, out: Path, seed: int = 0) -> str | None:
    """The d = 2 picture: the exact density, each cell proxy's decision regions (stored by
    the run), and where each source takes its samples as pressure rises (colour: pressure
    level, light to dark). Returns what is left out (for the report's note) when the
    folder predates stored decision regions: the panels are drawn without them."""
    plane = Plane(domain)
    wanted = [("pixel ascent", lambda s: s["source"] == "pixel_ascent" and s["proxy"] == "proxy_mlp"
               and s["settings"].get("optimizer", "adam") == "adam"),
              ("best-of-n (exact sampler)", lambda s: s["source"] == "best_of_n"
               and s["settings"].get("generator") == "sampler_exact"),
              ("latent ascent (exact sampler)", lambda s: s["source"] == "latent_ascent"
               and s["settings"].get("generator") == "sampler_exact" and s["proxy"] == "proxy_mlp"),
              ("CFG (exact diffusion)", lambda s: s["source"] == "guidance" and s["settings"].get("guidance") == "cfg"
               and s["settings"].get("generator") == "diffusion_exact" and s["settings"].get("ddim_steps", 25) > 25),
              ("CFG (learned diffusion)", lambda s: s["source"] == "guidance" and s["settings"].get("guidance") == "cfg"
               and s["settings"].get("generator") == "diffusion_mlp"),
              ("classifier guidance (exact)", lambda s: s["source"] == "guidance"
               and s["settings"].get("guidance") == "classifier" and s["settings"].get("classifier") == "noisy_exact"),
              ("classifier guidance (exact diffusion, learned classifier)", lambda s: s["source"] == "guidance"
               and s["settings"].get("guidance") == "classifier"
               and s["settings"].get("classifier", "noisy_classifier") == "noisy_classifier")]
    panels = []
    for title, match in wanted:
        cell = next((c for c in cells if c["spec"]["domain"] == domain and c["spec"]["seed"] == seed
                     and match(c["spec"])), None)
        if cell is not None:
            panels.append((title, cell))
    if not panels:
        return None
    stored = {c["spec"]["cell_id"]: read_cell_figures(Path(suite_dir) / c["spec"]["cell_id"]) for _, c in panels}
    missing = plane.dom.shape[0] == 2 and any(f is None for f in stored.values())
    drawn = set()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 4.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, cell) in zip(axes.flat, panels):
        figures = stored[cell["spec"]["cell_id"]]
        if figures is not None and "proxy_regions" in figures[0]:   # the cell's proxy, stored by the run
            lo, hi = json.loads(figures[1].get("regions_bounds", "[-1, 1]"))
            ax.imshow(figures[0]["proxy_regions"].numpy(), extent=(lo, hi, lo, hi), origin="lower", cmap="Set2",
                      alpha=0.35, vmin=0, vmax=7, interpolation="nearest")
            drawn.add(figures[1].get("regions_proxy", cell["spec"]["proxy"]))
        plane.background(ax)
        x, levels = snapshots(suite_dir, cell)
        colors = plt.cm.viridis_r(np.linspace(0.05, 1, len(levels)))
        pts = [plane(x[i]) for i in range(len(levels))]
        if cell["spec"]["source"] in ("pixel_ascent", "latent_ascent"):   # trajectories: one line per sample
            path = np.stack(pts)                                        # (levels, k, 2)
            for j in range(path.shape[1]):
                ax.plot(path[:, j, 0], path[:, j, 1], color="0.3", lw=0.6)
        for i, p in enumerate(pts):
            ax.scatter(p[:, 0], p[:, 1], color=colors[i], s=14, zorder=3,
                       label=f"{cell['spec']['knob']} {levels[i]:g}" if i in (0, len(levels) - 1) else None)
        rows = [r for r in cell["curve"]["rows"] if math.isfinite(r["proxy_prob"])]
        last = rows[-1]
        knob = cell["spec"]["knob"]
        ax.set_title(f"{title}\nat {knob} {last[knob]:g}: proxy {last['proxy_prob']:.2f}, "
                     f"atypical {last['gold_atypical']:.2f}", fontsize=8)
        if plane.dom.shape[0] == 2:   # the box; a projection keeps matplotlib's own limits
            ax.set_xlim(-1, 1)
            ax.set_ylim(-1, 1)
            ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="lower left")
        ax.tick_params(labelsize=6)
    import textwrap
    regions = f"; colour fields, each cell proxy's decision regions ({', '.join(sorted(drawn))})" \
        if drawn else "" if missing else "; no decision regions (the panels' proxies have no classes)"
    background = (f"grey, the exact log-density (dashed: the typical set's lower edge, its 0.5% log-density "
                  f"quantile){regions}" if plane.dom.shape[0] == 2 else
                  "the first two principal axes of the reference set (grey points)")
    fig.suptitle(textwrap.fill(f"{domain}, seed {seed}: {background}; dots, kept samples per pressure level "
                               "(light to dark)", 40 * cols) + (f"\nNote: {REGIONS_MISSING}." if missing else ""),
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return f"plots/{out.name} is drawn without the proxy's decision regions" if missing else None


def projections_figure(suite_dir: Path, cells: list[dict], domain: str, out: Path, seed: int = 0) -> str | None:
    """For a domain whose exact referee projects onto a manifold (`reconstruct`): each
    curve's kept outputs at its first and last defined level, each above the face it
    projects to (the projections the run stored), with the residual and the projection's
    class. Returns what is left out (for the report's note) when the folder predates
    stored projections: the outputs are drawn without them. Draws nothing where the run
    stored none because the domain's exact referee does not project."""
    picked = [c for c in cells if c["spec"]["domain"] == domain and c["spec"]["seed"] == seed]
    if not picked:
        return None
    stored = {c["spec"]["cell_id"]: read_cell_figures(Path(suite_dir) / c["spec"]["cell_id"]) for c in picked}
    if all(f is not None and "projections" not in f[0] for f in stored.values()):
        return None
    missing = any(f is None for f in stored.values())
    fig, axes = plt.subplots(len(picked), 1, figsize=(12, 1.9 * len(picked)), squeeze=False)
    for ax, cell in zip(axes[:, 0], picked):
        x, levels = snapshots(suite_dir, cell)
        rows = cell["curve"]["rows"]
        figures = stored[cell["spec"]["cell_id"]]
        has = figures is not None and "projections" in figures[0]
        projected = figures[0]["projection_levels"].tolist() if has else projected_levels(rows)
        first, last = projected[0], projected[-1]
        recon = torch.cat([figures[0]["projections"][0], figures[0]["projections"][-1]]).float() if has else None
        shown = torch.cat([x[first], x[last]])                  # first level, then last
        strip = torch.cat(list(shown[:, 0]), 1)
        if recon is not None:
            strip = torch.cat([strip, torch.cat(list(recon[:, 0]), 1)], 0)
        ax.imshow(strip.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axvline(x.shape[-1] * len(x[0]) - 0.5, color="tab:red", lw=1.5)
        knob = cell["spec"]["knob"]
        r0, r1 = rows[first], rows[last]
        label, proxy = cell["spec"]["label"], cell["spec"]["proxy"]
        ax.set_title(f"{label}{'' if proxy in label else f' [{proxy}]'}: left {knob} {levels[first]:g} "
                     f"(proxy {r0['proxy_prob']:.2f}, off-manifold {r0['gold_atypical']:.2f}), right {knob} "
                     f"{levels[last]:g} (proxy {r1['proxy_prob']:.2f}, off-manifold {r1['gold_atypical']:.2f}, "
                     f"projection has the target {r1['gold_prob']:.2f})", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{domain}, seed {seed}: top row of each strip, kept outputs; bottom row, the face each "
                 "projects to (the gold referee's nearest point on the renderer's manifold)"
                 + (f"\nNote: {PROJECTIONS_MISSING}." if missing else ""), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.45 if missing else 0.3) / fig.get_figheight()))   # room for the suptitle
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return f"plots/{out.name} is drawn without the projections" if missing else None
