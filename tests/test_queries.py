"""Proxy queries, the common compute axis: every source's declared count of forward and
backward passes per output sample (Source.queries) against a toy proxy that counts the
rows it actually sees. Runs on gmm2 (a vector domain: seconds) with n = 128, one fixed
chunk, so no padding rows enter the counts."""
from __future__ import annotations

import torch
from torch import nn

from optbench.pressure import SOURCES, Context
from optbench.pressure.crossings import Crossings
from optbench.pressure.generator import generator_finetune, latent_ascent
from optbench.pressure.pixel_ascent import pixel_ascent

N = 128


class CountingMLP(nn.Module):
    """A 2-d, 4-class classifier that counts the rows of its forward and backward passes."""

    proxy_kind = "classifier"

    def __init__(self, inputs: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(inputs, 16), nn.Tanh(), nn.Linear(16, 4))
        self.forward_rows = self.backward_rows = 0
        self.net.register_full_backward_hook(self._count_backward)

    def _count_backward(self, module, grad_in, grad_out):
        self.backward_rows += len(grad_out[0])

    def forward(self, x, t=None):     # t: called as a noise-aware classifier too
        self.forward_rows += len(x)
        return self.net(x.reshape(len(x), -1))


def _declared(source: str, settings: dict, knob: float) -> tuple[float, float]:
    return SOURCES[source].queries(SOURCES[source].defaults(**settings), knob, N)


def _ctx(proxy, crossings=None) -> Context:
    """gmm2: a 2-d domain in [-1, 1] with 4 classes."""
    return Context.of(proxy, "gmm2", N, 0, crossings)


def test_pixel_ascent_queries_are_counted_exactly():
    for optimizer in ("adam", "random_sign"):
        proxy = CountingMLP()
        x0, target = torch.rand(N, 2) * 2 - 1, torch.arange(N) % 4
        s = SOURCES["pixel_ascent"].defaults(optimizer=optimizer)
        for steps in (lv.knob for lv in pixel_ascent(_ctx(proxy), x0, target, [0, 1, 4, 16], s)):
            fwd, bwd = _declared("pixel_ascent", {"optimizer": optimizer}, steps)
            assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N), (optimizer, steps)


def test_feature_vis_queries_are_counted_exactly():
    """One forward and one backward pass per step, whatever the priors (the
    transformation is applied inside the pass)."""
    from optbench.pressure.feature_vis import feature_vis_ascent
    proxy = CountingMLP(inputs=64)
    x0, target = torch.rand(N, 1, 8, 8), torch.arange(N) % 4
    s = SOURCES["feature_vis"].defaults(jitter=1, rotate=5.0, tv=1.0)
    for steps in (lv.knob for lv in feature_vis_ascent(Context.of(proxy, "mnist"), x0, target, [0, 1, 4, 16], s)):
        fwd, bwd = _declared("feature_vis", {}, steps)
        assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N), steps


def test_search_queries_are_counted_exactly():
    """Forward passes only: the start (or a GA's first population) and each generation's
    candidates, all samples' populations in one batch."""
    from optbench.pressure.search import search
    for algorithm, encoding in (("random_search", "direct"), ("cma_es", "direct"), ("genetic", "direct")):
        proxy = CountingMLP()
        x0, target = torch.rand(N, 2) * 2 - 1, torch.arange(N) % 4
        s = SOURCES[algorithm].defaults(population=4)
        for gens in (lv.knob for lv in search(_ctx(proxy), x0, target, [0, 1, 3], s, algorithm)):
            fwd, bwd = _declared(algorithm, {"population": 4}, gens)
            assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N), (algorithm, gens)


def test_generator_sources_queries_are_counted_exactly():
    torch.manual_seed(1)
    G = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    G.latent_dim = 3
    proxy = CountingMLP()
    s = SOURCES["latent_ascent"].defaults(lr=0.05, objective="logit")
    for steps in (lv.knob for lv in latent_ascent(_ctx(proxy), G, torch.randn(N, 3), torch.arange(N) % 4, [0, 2, 8], s)):
        fwd, bwd = _declared("latent_ascent", {}, steps)
        assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N)
    proxy = CountingMLP()
    batch = 32
    s = SOURCES["generator_finetune"].defaults(lr=1e-3, batch_size=batch, objective="log_prob", target_class=1)
    for steps in (lv.knob for lv in generator_finetune(_ctx(proxy), G, torch.randn(N, 3), torch.full((N,), 1),
                                                       [0, 2, 8], s)):
        fwd, bwd = _declared("generator_finetune", {"batch_size": batch}, steps)
        assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N), steps


def test_diffusion_finetune_queries_are_counted_exactly():
    """batch_size rewards per fine-tune step (forward and backward), none for the
    outputs, which the source samples but does not score."""
    from optbench.models.checkpoints import load_model
    from optbench.pressure.diffusion_finetune import draft_finetune
    from optbench.pressure.guidance import initial_noise
    proxy = CountingMLP()
    model = load_model("gmm2", "diffusion_mlp")
    s = SOURCES["diffusion_finetune"].defaults(batch_size=8, ddim_steps=4)
    for steps in (lv.knob for lv in draft_finetune(_ctx(proxy), model, initial_noise(N, 0, (2,)), torch.arange(N) % 4,
                                                   [0, 1, 3], s)):
        fwd, bwd = _declared("diffusion_finetune", {"batch_size": 8}, steps)
        assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N, bwd * N), steps


def test_crossings_probe_is_not_charged_to_the_optimizer():
    """Equal-proxy crossings cost one forward pass at the last level: the benchmark's
    measurement, outside the declared count."""
    proxy = CountingMLP()
    x0, target = torch.rand(N, 2) * 2 - 1, torch.arange(N) % 4
    list(pixel_ascent(_ctx(proxy, Crossings(N)), x0, target, [0, 4], SOURCES["pixel_ascent"].defaults()))
    fwd, bwd = _declared("pixel_ascent", {}, 4)
    assert (proxy.forward_rows, proxy.backward_rows) == (fwd * N + N, bwd * N)


def test_classifier_guidance_counts_its_classifier_and_cfg_counts_none():
    from optbench.domains import get_domain
    from optbench.models.checkpoints import load_model
    from optbench.pressure.guidance import guided_samples, initial_noise
    dom = get_domain("gmm2")
    unet = load_model(dom, "diffusion_exact")
    clf = CountingMLP()
    labels = torch.arange(N) % 4
    s = {"guidance": "classifier", "ddim_steps": 10, "interval_lo": 300, "interval_hi": 800}
    full = SOURCES["guidance"].defaults(**s, scales=[0.0, 2.0], base="uncond")
    for scale in (lv.knob for lv in guided_samples(unet, labels, initial_noise(N, 0, dom.shape), full, clf,
                                                   bounds=dom.bounds)):
        if scale == 0.0:
            assert clf.forward_rows == 0
    fwd, bwd = _declared("guidance", s, 2.0)
    assert 0 < fwd < 10                       # the interval keeps some of the 10 steps
    assert (clf.forward_rows, clf.backward_rows) == (fwd * N, bwd * N)
    assert _declared("guidance", {"guidance": "cfg"}, 4.0) == (0.0, 0.0)


def test_selection_scores_its_pool_once_forward_only():
    """Best-of-n is estimated from one pool scored once: N forward passes, no backward;
    its declared cost at level n is the n candidates one real draw would score."""
    from optbench.pressure.gan_sources import _chunk_scores
    from optbench.proxies import as_proxy
    proxy = CountingMLP()
    _chunk_scores(as_proxy(proxy), torch.rand(4096, 2), "log_prob")
    assert (proxy.forward_rows, proxy.backward_rows) == (4096, 0)
    assert _declared("best_of_n", {}, 4096) == (4096, 0.0)
