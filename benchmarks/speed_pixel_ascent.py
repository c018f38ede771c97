"""Speed of a pixel-ascent step against a bare forward+backward loop of the same model
and batch: the overhead of optbench's optimizer loop (Adam, projection, bookkeeping).

The proxy's own forward+backward gets slower as ascent saturates the pixels, so the loop
is compared with the bare loop on the same inputs twice: with lr = 0 (the inputs stay at
the start, as in the bare loop) and, for the real trajectory, against the bare loop on the
trajectory's final inputs.

    .venv/bin/python benchmarks/speed_pixel_ascent.py [--threads 1] [--batch 128] [--steps 256]

Prints median seconds per step over repeats and the ratio (goal: <= 1.05). The loops run
interleaved (A, B, C, ..., A, B, C, ...), and each ratio is the median of per-round
ratios: on a shared 2-core VM the speed drifts by 10-20% over a minute, which sequential
blocks of repeats mistake for overhead."""
from __future__ import annotations

import argparse
import statistics
import time


from optbench.models.checkpoints import load_model
from optbench.models.fixed_batch import CHUNK
from optbench.pressure import Context
from optbench.pressure.pixel_ascent import PIXEL_ASCENT, pixel_ascent
from optbench.proxies import ClassifierProxy
from optbench.pressure.starts import make_starts
from optbench.workers import setup_torch


def bare_loop(model, x0, target, steps):
    x = x0.clone().requires_grad_(True)
    for _ in range(steps):
        loss = -ClassifierProxy(model).score(model(x), target, "logit").sum()
        x.grad = None
        loss.backward()


def ascent_loop(model, x0, target, steps, lr=0.01, norm="none", eps=0.0):
    for _ in pixel_ascent(Context.of(model, "mnist"), x0, target, [0, steps], PIXEL_ASCENT.defaults(lr=lr, norm=norm, eps=eps)):
        pass


def timed_rounds(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each fn per round, the fns interleaved within every round."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def ratio(times, a, b) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    setup_torch(a.threads)
    model = load_model("mnist", "proxy_cnn", a.device)
    x0, target = make_starts("mnist", "real", a.batch, 0)
    x0, target = x0.to(a.device), target.to(a.device)
    bare_loop(model, x0, target, 10)  # warm-up
    *_, last = pixel_ascent(Context.of(model, "mnist"), x0, target, [0, a.steps], PIXEL_ASCENT.defaults(lr=0.01))
    x_end = last.x
    times = timed_rounds({
        "bare fwd+bwd, start inputs": lambda: bare_loop(model, x0, target, a.steps),
        "ascent lr=0, start inputs": lambda: ascent_loop(model, x0, target, a.steps, lr=0.0),
        "bare fwd+bwd, final inputs": lambda: bare_loop(model, x_end, target, a.steps),
        "ascent lr=0.01 (free)": lambda: ascent_loop(model, x0, target, a.steps),
        "ascent lr=0.01 (L2 PGD)": lambda: ascent_loop(model, x0, target, a.steps, 0.01, "l2", 3.0),
    }, a.repeats)
    print(f"proxy_cnn, batch {a.batch}, {a.steps} steps, {a.threads} thread(s), {a.device}, "
          f"median of {a.repeats} interleaved rounds, chunks of {CHUNK}")
    for name, t in times.items():
        print(f"  {name:28s} {statistics.median(t) / a.steps * 1e3:7.2f} ms/step")
    print(f"loop overhead at equal inputs: "
          f"{ratio(times, 'ascent lr=0, start inputs', 'bare fwd+bwd, start inputs'):.3f}x (goal <= 1.05)")
    print(f"free ascent vs bare on its final inputs: "
          f"{ratio(times, 'ascent lr=0.01 (free)', 'bare fwd+bwd, final inputs'):.3f}x")


if __name__ == "__main__":
    main()
