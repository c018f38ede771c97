"""Where a pixel-ascent cell's time goes: the proxy's forward and backward passes versus
the referees at each level (issue 12 asked for this before cutting samples).

    .venv/bin/python benchmarks/profile_cell.py [--steps 128] [--n 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import time


from optbench.pressure import Context
from optbench.pressure.crossings import Crossings
from optbench.pressure.pixel_ascent import PIXEL_ASCENT, pixel_ascent
from optbench.pressure.source import log_levels
from optbench.pressure.starts import make_starts
from optbench.referees import Referee
from optbench.workers import setup_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    setup_torch(args.threads)
    t0 = time.perf_counter()
    referee = Referee("mnist", "proxy_cnn")
    referee.null(args.n)
    t_load = time.perf_counter() - t0
    x0, target = make_starts("mnist", "real", args.n, 0)
    crossings = Crossings(args.n)
    t_ascent = t_eval = 0.0
    levels = 0
    ctx = Context.of(referee.proxy, "mnist", args.n, 0, crossings)
    trajectory = pixel_ascent(ctx, x0, target, log_levels(args.steps), PIXEL_ASCENT.defaults())
    while True:
        t0 = time.perf_counter()
        item = next(trajectory, None)
        t_ascent += time.perf_counter() - t0
        if item is None:
            break
        t0 = time.perf_counter()
        referee.evaluate(item.x, target, x0)
        t_eval += time.perf_counter() - t0
        levels += 1
    t0 = time.perf_counter()
    for _, mask, x, _ in crossings.sets():
        if x is not None:
            referee.evaluate(x, target[mask], x0[mask])
    t_stopped = time.perf_counter() - t0
    total = t_load + t_ascent + t_eval + t_stopped
    print(f"{args.steps} steps, {args.n} samples, {args.threads} thread(s): total {total:.1f} s")
    for what, t in (("loading models, reference features, null", t_load),
                    (f"ascent: {args.steps} forward+backward passes (+ crossing checks)", t_ascent),
                    (f"referees at {levels} levels", t_eval), ("referees on the 3 stopped sets", t_stopped)):
        print(f"  {what:<62} {t:6.1f} s  {100 * t / total:4.0f}%")


if __name__ == "__main__":
    main()
