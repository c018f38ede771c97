"""Speed of DDIM sampling from the shipped diffusion model, fp32 against bf16 autocast,
unguided (w = 1), classifier-free guided (w = 3, doubled batch) and classifier guided.

    .venv/bin/python benchmarks/speed_guidance.py [--threads 2] [--n 64] [--steps 50]
"""
from __future__ import annotations

import argparse
import time

import torch

from optbench.models.checkpoints import load_model
from optbench.pressure.guidance import GUIDANCE_SOURCE, guided_samples, initial_noise
from optbench.workers import setup_torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    setup_torch(a.threads)
    unet = load_model("mnist", "diffusion_unet", a.device)
    clf = load_model("mnist", "noisy_classifier", a.device)
    labels = (torch.arange(a.n) % 10).to(a.device)
    x_T = initial_noise(a.n, 0).to(a.device)
    print(f"{a.n} samples, {a.steps} DDIM steps, {a.threads} thread(s), {a.device}")
    outs = {}
    for name, guidance, scale in [("unguided (w=1)", "cfg", 1.0), ("CFG w=3", "cfg", 3.0),
                                  ("classifier s=10", "classifier", 10.0)]:
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            s = GUIDANCE_SOURCE.defaults(scales=[scale], guidance=guidance, ddim_steps=a.steps, precision=precision)
            (x,) = (level.x for level in guided_samples(unet, labels, x_T, s, clf))
            dt = time.perf_counter() - t0
            outs[(name, precision)] = x
            print(f"  {name:18s} {precision}: {dt:6.1f} s  ({a.n * a.steps / dt:6.0f} sample-steps/s)")
        diff = (outs[(name, 'fp32')] - outs[(name, 'bf16')]).abs()
        print(f"  {name:18s} bf16 vs fp32 pixels: mean |diff| {diff.mean():.4f}, max {diff.max():.3f}")


if __name__ == "__main__":
    main()
