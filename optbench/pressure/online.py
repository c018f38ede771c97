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

from optbench.models.fixed_batch import score_and_grad
from optbench.proxies import ClassifierProxy

MAX_BUFFER = 4096   # newest stored outputs kept as negatives


def complementary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(1 - p_target), computed stably as -log(sum of the other classes' p)."""
    logp = logits.log_softmax(1)
    others = logp.masked_fill(F.one_hot(target, logp.shape[1]).bool(), float("-inf"))
    return -torch.logsumexp(others, 1)


def online_pixel_ascent(proxy: torch.nn.Module, start: torch.Tensor, target: torch.Tensor,
                        levels: list[int], lr: float, objective: str, retrain_every: int,
                        retrain_steps: int, retrain_lr: float, real_x: torch.Tensor,
                        real_y: torch.Tensor, seed: int, batch_size: int = 64,
                        bounds: tuple[float, float] = (0.0, 1.0)) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Yield (steps, x, info) per level; info's extras hold the online proxy's own scores
    (proxy_prob and friends: what the optimizer sees), the frozen proxy's probability,
    and the compute spent on retraining."""
    proxy = getattr(proxy, "model", proxy)   # the module under a Proxy: it is retrained
    online = copy.deepcopy(proxy).eval().requires_grad_(True)   # eval: batch norm stays fixed
    read = ClassifierProxy(online)
    opt_model = torch.optim.Adam(online.parameters(), lr=retrain_lr)
    x = start.clone().requires_grad_(True)
    opt_x = torch.optim.Adam([x], lr=lr, fused=x.device.type in ("cpu", "cuda"))  # as pixel_ascent
    gen = torch.Generator().manual_seed(seed)
    device = start.device
    buf_x, buf_t = start.new_empty((0, *start.shape[1:])), target.new_empty((0,))
    step, updates, retrain_seconds = 0, 0, 0.0
    for level in levels:
        while step < level:
            # autograd.grad on x only: the proxy's weights get no gradient here
            _, grad = score_and_grad(lambda xc, tc: read.score(online(xc), tc, objective), x, target)
            x.grad = grad.neg_()
            opt_x.step()
            with torch.no_grad():
                x.clamp_(*bounds)
            step += 1
            if step % retrain_every == 0:
                t0 = time.time()
                buf_x = torch.cat([buf_x, x.detach()])[-MAX_BUFFER:]
                buf_t = torch.cat([buf_t, target])[-MAX_BUFFER:]
                for _ in range(retrain_steps):
                    i = torch.randint(0, len(real_x), (batch_size,), generator=gen)
                    j = torch.randint(0, len(buf_x), (batch_size,), generator=gen)
                    fit = F.cross_entropy(online(real_x[i].to(device)), real_y[i].to(device))
                    neg = complementary_loss(online(buf_x[j]), buf_t[j]).mean()
                    opt_model.zero_grad(set_to_none=True)
                    (fit + neg).backward()
                    opt_model.step()
                    updates += 1
                retrain_seconds += time.time() - t0
        with torch.no_grad():
            out = x.detach().clone()
            logits = online(out)
            frozen = proxy(out).softmax(1).gather(1, target[:, None]).squeeze(1)
        extras = {"proxy_prob": float(logits.softmax(1).gather(1, target[:, None]).mean()),
                  "proxy_logit": float(logits.gather(1, target[:, None]).mean()),
                  "proxy_hit": float((logits.argmax(1) == target).double().mean()),
                  "frozen_proxy_prob": float(frozen.mean()),
                  "retrain_updates": updates, "retrain_samples": updates * 2 * batch_size,
                  "retrain_seconds": round(retrain_seconds, 3)}
        yield step, out, {"extras": extras}
