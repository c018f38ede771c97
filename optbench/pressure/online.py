"""Pixel ascent against an online proxy: a copy of the proxy that is retrained every k
ascent steps, with the outputs so far added as "not this class" negatives and mixed with
its original training data ("nobody freezes the discriminator").

The negative loss is -log(1 - p(target | x)) on each stored output, a complementary-label
loss (Ishida et al. 2017); the positive loss is cross-entropy on the proxy's own
training split. Retraining couples the samples of a batch, so unlike frozen pixel ascent
a sample's trajectory depends on the batch it is in; a seed still fixes every number."""
from __future__ import annotations

import copy
import time
from typing import Iterator

import torch
import torch.nn.functional as F

from optbench.models.fixed_batch import map_fixed, score_and_grad
from optbench.pressure.pixel_ascent import PIXEL_ASCENT
from optbench.pressure.source import MAX_LR, MAX_STEPS, Context, Level, Setting, Source, Trajectory
from optbench.pressure.starts import make_starts
from optbench.proxies import ClassifierProxy, as_proxy

MAX_BUFFER = 4096   # newest stored outputs kept as negatives
RETRAIN_BATCH = 64  # real examples and stored negatives per retraining step (each)


def complementary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(1 - p_target), computed stably as -log(sum of the other classes' p)."""
    logp = logits.log_softmax(1)
    others = logp.masked_fill(F.one_hot(target, logp.shape[1]).bool(), float("-inf"))
    return -torch.logsumexp(others, 1)


def online_pixel_ascent(ctx: Context, start: torch.Tensor, target: torch.Tensor, levels: list[int], s: dict,
                        real_x: torch.Tensor, real_y: torch.Tensor) -> Iterator[Level]:
    """Yield a Level per step count in `levels`, with ONLINE_ASCENT's settings `s`; its
    values are the online copy's own readings (online_proxy_prob and friends: what the
    optimizer sees) and the compute spent on retraining it on (real_x, real_y) and the
    outputs so far. `ctx.crossings` observes the frozen proxy ctx.proxy, the one the
    cell names, never the retrained copy."""
    lr, objective, retrain_every, batch_size = s["lr"], s["objective"], s["retrain_every"], RETRAIN_BATCH
    frozen, crossings = as_proxy(ctx.proxy), ctx.crossings
    proxy = getattr(ctx.proxy, "model", ctx.proxy)   # the module under a Proxy: a copy of it is retrained
    online = copy.deepcopy(proxy).eval().requires_grad_(True)   # eval: batch norm stays fixed
    read = ClassifierProxy(online)
    opt_model = torch.optim.Adam(online.parameters(), lr=s["retrain_lr"])
    x = start.clone().requires_grad_(True)
    opt_x = torch.optim.Adam([x], lr=lr, fused=x.device.type in ("cpu", "cuda"))  # as pixel_ascent
    gen = torch.Generator().manual_seed(ctx.seed)
    device = start.device
    buf_x, buf_t = start.new_empty((0, *start.shape[1:])), target.new_empty((0,))

    def record(step: int) -> None:   # the frozen proxy's reading: a measurement, no query of the optimizer's
        if crossings is not None:
            with torch.no_grad():
                prob = map_fixed(lambda xc, tc: frozen.score_and_prob(xc, tc, objective)[1], x.detach(), target)
            crossings.update(step, prob, lambda mask: x.detach()[mask.to(x.device)])

    step, updates, retrain_seconds = 0, 0, 0.0
    for level in levels:
        while step < level:
            record(step)
            # autograd.grad on x only: the proxy's weights get no gradient here
            _, grad = score_and_grad(lambda xc, tc: read.score(online(xc), tc, objective), x, target)
            x.grad = grad.neg_()
            opt_x.step()
            with torch.no_grad():
                x.clamp_(*ctx.bounds)
            step += 1
            if step % retrain_every == 0:
                t0 = time.time()
                buf_x = torch.cat([buf_x, x.detach()])[-MAX_BUFFER:]
                buf_t = torch.cat([buf_t, target])[-MAX_BUFFER:]
                for _ in range(s["retrain_steps"]):
                    i = torch.randint(0, len(real_x), (batch_size,), generator=gen)
                    j = torch.randint(0, len(buf_x), (batch_size,), generator=gen)
                    fit = F.cross_entropy(online(real_x[i].to(device)), real_y[i].to(device))
                    neg = complementary_loss(online(buf_x[j]), buf_t[j]).mean()
                    opt_model.zero_grad(set_to_none=True)
                    (fit + neg).backward()
                    opt_model.step()
                    updates += 1
                retrain_seconds += time.time() - t0
        if step == levels[-1]:   # the last outputs get no step: read them once
            record(step)
        with torch.no_grad():
            out = x.detach().clone()
            logits = online(out)
        values = {"online_proxy_prob": float(logits.softmax(1).gather(1, target[:, None]).mean()),
                  "online_proxy_logit": float(logits.gather(1, target[:, None]).mean()),
                  "online_proxy_hit": float((logits.argmax(1) == target).double().mean()),
                  "retrain_updates": updates, "retrain_samples": updates * 2 * batch_size,
                  "retrain_seconds": round(retrain_seconds, 3)}
        yield Level(step, out, values=values)


def run(ctx: Context, s: dict) -> Trajectory:
    x0, target = make_starts(ctx.domain, s["start"], ctx.n, ctx.seed)
    real_x, real_y = ctx.domain.load_split("proxy_train")
    levels = online_pixel_ascent(ctx, x0.to(ctx.device), target.to(ctx.device), ctx.step_levels(s["max_steps"]), s,
                                 real_x, real_y)
    return Trajectory(x0, target, (level.cpu() for level in levels), s["lr"])


ONLINE_ASCENT = Source(
    name="online_pixel_ascent",
    knob="steps",
    pressure="steps x lr",
    doc="pixel ascent against a copy of the proxy retrained every k steps on its training "
        "data plus the outputs so far as 'not this class' negatives; proxy_prob is the frozen "
        "proxy's (the one the cell names), online_proxy_prob the retrained copy's",
    run=run,
    iterative=True,
    settings={
        **{k: PIXEL_ASCENT.settings[k] for k in ("start", "lr", "max_steps", "objective")},
        "retrain_every": Setting(int, 64, minimum=1, maximum=MAX_STEPS, doc="ascent steps between retrainings (k)"),
        "retrain_steps": Setting(int, 32, minimum=0, maximum=2**16, doc="Adam steps per retraining (batch 64 real + 64 negatives)"),
        "retrain_lr": Setting(float, 1e-3, minimum=1e-12, maximum=MAX_LR, doc="the proxy's retraining step size"),
    },
    values={"online_proxy_prob": "the retrained copy's mean target probability (what the optimizer sees)",
            "online_proxy_logit": "the retrained copy's mean target logit",
            "online_proxy_hit": "share of samples the retrained copy classifies as the target",
            "retrain_updates": "Adam steps spent retraining the copy so far",
            "retrain_samples": "examples seen in retraining so far (real and negatives)",
            "retrain_seconds": "wall seconds spent retraining so far"},
    check=lambda s, dom: (None if "proxy_train" in dom.splits else
                          f"domain: online_pixel_ascent retrains on the proxy_train split, which domain "
                          f"{dom.name!r} does not declare; add proxy_train to its splits"),
    figure_row="pixel_ascent",
    proxy_kinds=("classifier",),   # "not this class" needs classes
    # 2: proxy_prob is the frozen proxy's (it was the online copy's, beside frozen_proxy_prob),
    # and the cell has exact equal-proxy points: cells made before get new ids, not reused.
    version=2,
    queries=lambda s, k, n: (k, k),   # the ascent's; retraining the copy is not counted
)
