"""Where DRaFT's time goes on MNIST: one fine-tune step split into its parts, and the
sampling of a level's outputs, at one thread (README, Speed).

    .venv/bin/python benchmarks/speed_draft.py [--threads 1] [--batch 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from optbench.models.checkpoints import load_model
from optbench.models.diffusion import to_pixels
from optbench.pressure.diffusion_finetune import conditional_eps
from optbench.pressure.guidance import ddim_sample, make_ddim
from optbench.proxies import as_proxy
from optbench.workers import setup_torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ddim-steps", type=int, default=25)
    p.add_argument("--outputs", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    setup_torch(a.threads)
    model = load_model("mnist", "diffusion_unet").eval().requires_grad_(True)
    proxy = as_proxy(load_model("mnist", "proxy_cnn"))
    scheduler = make_ddim("none", getattr(model, "scheduler_config", None))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn((a.batch, 1, 28, 28), generator=gen)
    labels = torch.randint(0, 10, (a.batch,), generator=gen)
    parts: dict[str, list[float]] = {k: [] for k in ("chain without graph (T-1 steps)", "last step with graph",
                                                      "proxy reward", "backward", "Adam step")}
    for _ in range(a.repeats):
        t1 = time.perf_counter()
        x0 = ddim_sample(conditional_eps(model, labels), x_T, scheduler, a.ddim_steps, "none", 1)
        t2 = time.perf_counter()
        r = proxy.score(proxy(to_pixels(x0, (0.0, 1.0))), labels, "log_prob")
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (-r.mean()).backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        # Split the sampling call: a chain of T - 1 steps without a graph, timed alone.
        with torch.no_grad():
            s0 = time.perf_counter()
            ddim_sample(conditional_eps(model, labels), x_T, scheduler, a.ddim_steps - 1, "none", 0)
            chain = time.perf_counter() - s0
        parts["chain without graph (T-1 steps)"].append(chain)
        parts["last step with graph"].append(max(0.0, (t2 - t1) - chain))
        parts["proxy reward"].append(t3 - t2)
        parts["backward"].append(t4 - t3)
        parts["Adam step"].append(t5 - t4)
    med = {k: statistics.median(v) for k, v in parts.items()}
    total = sum(med.values())
    print(f"## DRaFT-1 fine-tune step, batch {a.batch}, {a.ddim_steps} DDIM steps, {a.threads} thread(s)\n")
    print("| part | seconds | share |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / total:.0%} |")
    print(f"| one step | {total:.2f} | {1 / total:.2f} steps per second |")
    times = []
    x_eval = torch.randn((a.outputs, 1, 28, 28), generator=gen)
    l_eval = torch.arange(a.outputs) % 10
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            ddim_sample(conditional_eps(model, l_eval), x_eval, scheduler, a.ddim_steps, "none", 0)
        times.append(time.perf_counter() - t0)
    print(f"\nsampling one level's {a.outputs} outputs ({a.ddim_steps} DDIM steps): "
          f"{statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
