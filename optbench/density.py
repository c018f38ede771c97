"""An independent density model of a domain's data, for the typicality detector (issue 16).

A masked autoregressive flow (Papamakarios et al. 2017) from zuko, trained on the proxy's
training split: what an optimizer's owner has. zuko because it is a maintained, pure-torch
flow library with one-line flows; MAF because a typicality test only evaluates densities
(one pass per sample), never samples.

The flow works in an unbounded space: x in the domain's box [lo, hi] is scaled into
(alpha, 1 - alpha), sent through the logit and standardized per coordinate. `log_prob`
adds the log-Jacobian of that map, so it is a density of x on the box: it integrates to
1 there (tested in d = 2). Training adds uniform noise of one 8-bit grey level
(dequantization, Theis et al. 2016): images are quantized, and a continuous density on
quantized values is unbounded. Outputs outside the box are clamped into it first (their
share is the referee's `out_of_range`).

Flows are trained on first use and kept in the user cache (safetensors with a sha256
beside them), like proxy replicates."""
from __future__ import annotations

import copy
import math
import time

import torch
from safetensors.torch import load_file, save_file

from optbench.cache import cache_dir, entry_lock, key_hash
from optbench.domains import get_domain
from optbench.model_files import sha256_of

DENSITY_VERSION = 1
ALPHA = 0.01          # the logit map's margin: the box edges go to logit(0.01), not -inf


def flow_size(dim: int) -> dict:
    """Transforms and hidden widths, chosen on gmm2, gmm64 and MNIST's held-out splits:
    with 400-1,000 training samples, small flows with early stopping generalize best."""
    if dim <= 8:
        return {"transforms": 3, "hidden_features": (32, 32)}
    return {"transforms": 2, "hidden_features": (min(256, 2 * dim),) * 2}


class FlowDensity(torch.nn.Module):
    """log p(x) for x in the box [lo, hi]^d (any shape; flattened)."""

    def __init__(self, dim: int, bounds: tuple[float, float], transforms: int, hidden_features):
        super().__init__()
        import zuko
        self.dim, self.lo, self.hi = dim, float(bounds[0]), float(bounds[1])
        self.flow = zuko.flows.MAF(dim, transforms=transforms, hidden_features=tuple(hidden_features))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def _logit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, u): x scaled from the box into (ALPHA, 1 - ALPHA), and its logit."""
        s = ALPHA + (1 - 2 * ALPHA) * ((x.flatten(1) - self.lo) / (self.hi - self.lo)).clamp(0, 1)
        return s, torch.log(s) - torch.log1p(-s)

    def _to_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z and log |dz/dx| summed over coordinates."""
        s, u = self._logit(x)
        z = (u - self.mean) / self.std
        log_det = (math.log(1 - 2 * ALPHA) - math.log(self.hi - self.lo) - torch.log(s) - torch.log1p(-s)
                   - torch.log(self.std)).sum(1)
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z, log_det = self._to_flow(x.float())
        return self.flow().log_prob(z) + log_det

    def fit(self, x: torch.Tensor, steps: int, seed: int, lr: float = 1e-3, batch: int = 128,
            val_frac: float = 0.2, every: int = 50, patience: int = 6) -> dict:
        """Maximum likelihood with Adam on 1 - val_frac of x, keeping the weights that did
        best on the rest (early stopping: a few hundred samples overfit a flow within
        hundreds of steps; training stops after `patience` checks without a better
        one). Returns the validation loss (nats per coordinate) at its best
        and the step."""
        gen = torch.Generator().manual_seed(seed)
        x = x.flatten(1).float()[torch.randperm(len(x), generator=gen)]
        n_val = max(1, int(val_frac * len(x)))
        val, train = x[:n_val], x[n_val:]
        noise = lambda t: t + (self.hi - self.lo) / 256 * torch.rand(t.shape, generator=gen)  # noqa: E731
        with torch.no_grad():
            _, u = self._logit(noise(train))
            self.mean.copy_(u.mean(0))
            self.std.copy_(u.std(0).clamp_min(1e-3))
        val = noise(val)   # one fixed dequantization of the validation samples
        opt = torch.optim.Adam(self.flow.parameters(), lr=lr)
        best = {"val_loss": math.inf, "step": 0}
        state = copy.deepcopy(self.flow.state_dict())
        for step in range(steps + 1):
            if step % every == 0:
                with torch.no_grad():
                    v = float(-self.log_prob(val).mean() / self.dim)
                if v < best["val_loss"]:
                    best = {"val_loss": v, "step": step}
                    state = copy.deepcopy(self.flow.state_dict())
            if step == steps or step - best["step"] >= patience * every:
                break
            idx = torch.randint(len(train), (min(batch, len(train)),), generator=gen)
            loss = -self.log_prob(noise(train[idx])).mean() / self.dim
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.flow.load_state_dict(state)
        return best


def _key(domain: str, steps: int) -> dict:
    dom = get_domain(domain)
    return {"domain": domain, "data": dom.fingerprint(), "version": DENSITY_VERSION, "steps": steps,
            "size": flow_size(math.prod(dom.shape)), "split": "proxy_train",
            "torch": ".".join(torch.__version__.split(".")[:2])}


def domain_density(domain: str, steps: int = 2000, seed: int = 0,
                   device: str | torch.device | None = None) -> FlowDensity:
    """The domain's flow, trained on its proxy_train split on first use, then cached."""
    dom = get_domain(domain)
    dim = math.prod(dom.shape)
    model = FlowDensity(dim, dom.bounds, **flow_size(dim))
    path = cache_dir(f"densities/{domain}") / f"maf-{key_hash(_key(domain, steps))}.safetensors"
    sha = path.with_name(path.name + ".sha256")
    with entry_lock(path):
        if not (path.exists() and sha.exists() and sha.read_text().strip() == sha256_of(path)):
            x, _ = dom.load_split("proxy_train")
            t0 = time.time()
            with torch.random.fork_rng():
                torch.manual_seed(seed)   # the MADE masks' and weights' initialization
                model = FlowDensity(dim, dom.bounds, **flow_size(dim))
                model.fit(x, steps, seed)
            model.train_seconds = time.time() - t0
            tmp = path.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
            tmp.replace(path)
            sha.write_text(sha256_of(path) + "\n")
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model
