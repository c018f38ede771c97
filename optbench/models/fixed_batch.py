"""Run a per-sample model on chunks of one fixed shape, so that a sample's numbers do not
depend on the batch it is in.

Why: torch picks CPU kernels by batch size (oneDNN convolution for a batch above 1,
ATen's own for a batch of 1) and by CPU, and different kernels round differently. In
gradient ascent, Adam divides each gradient by its running RMS, so a rounding difference
in a near-zero background gradient flips its sign and moves the pixel by a full step.
Every call here sees a (chunk, ...) tensor, the last one padded with zeros, so a sample
meets the same kernels alone or in any batch. On one machine that makes its trajectory
bit-identical (tested under several kernel sets); across machines the kernels differ
anyway, and the README states the measured tolerance.

Written here because no library does this: torch.func.vmap batches, but does not fix
the shape that kernel selection sees."""
from __future__ import annotations

from typing import Callable

import torch

# Samples per model call. Smaller chunks cost more: against one call of 128, proxy_cnn's
# forward+backward took 1.04x / 1.14x in chunks of 64 / 32 at 1 thread, 1.09x / 1.21x at
# 2 threads. At 128 the suites' batches (128) run as one call, as before; a batch that is
# not a multiple of 128 pays for the padding (200 samples run as 256).
CHUNK = 128


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a module's tensors live: its first parameter's device, else its first
    buffer's (a feature map with no weights), else the CPU."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def pad_rows(t: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if t is None or len(t) == size:   # None: an argument with no rows (no target class)
        return t
    return torch.cat([t, t.new_zeros((size - len(t), *t.shape[1:]))])


def _rows(t: torch.Tensor | None, i: int, j: int) -> torch.Tensor | None:
    return None if t is None else t[i:j]


def chunks(n: int, chunk: int = CHUNK):
    """(start, stop) of each chunk of rows 0..n."""
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def map_fixed(fn: Callable[..., torch.Tensor], *args: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """fn(*args) computed on fixed-size chunks of rows and concatenated: one call's
    values up to rounding, with each row's rounding independent of the other rows."""
    n = len(args[0])
    outs = []
    for i, j in chunks(n, chunk):
        outs.append(fn(*(pad_rows(_rows(a, i, j), chunk) for a in args))[:j - i])
    return torch.cat(outs)


def score_and_grad(score_fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor,
                   chunk: int = CHUNK, aux: bool = False):
    """Per-sample scores score_fn(x, *args) and the gradient of their sum with respect to
    x, computed chunk by chunk (padding rows get zero weight in the backward pass).
    With `aux`, score_fn returns (scores, extra per-sample values from the same forward
    pass, e.g. probabilities) and those come back third."""
    scores, grads, extras = [], [], []
    for i, j in chunks(len(x), chunk):
        xc = pad_rows(x[i:j].detach(), chunk).requires_grad_(True)
        out = score_fn(xc, *(pad_rows(_rows(a, i, j), chunk) for a in args))
        s, e = out if aux else (out, None)
        s = s[:j - i]
        (g,) = torch.autograd.grad(s.sum(), xc)
        scores.append(s.detach())
        grads.append(g[:j - i])
        if aux:
            extras.append(e[:j - i].detach())
    if aux:
        return torch.cat(scores), torch.cat(grads), torch.cat(extras)
    return torch.cat(scores), torch.cat(grads)


@torch.no_grad()
def in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int,
               device: torch.device | str) -> torch.Tensor:
    """fn on rows of x in batches of `batch` (moved to `device`), as float32 on the CPU:
    the one batched no-grad forward of the referees and selection sources. Unlike
    `map_fixed` the last batch is not padded: these are scores read once, not steps."""
    return torch.cat([fn(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])
