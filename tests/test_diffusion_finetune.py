"""diffusion_finetune (DRaFT-K) on gmm2's learned MLP diffusion model: it raises the
frozen proxy's reward, its weight penalty keeps the weights closer, the gradient reaches
only the last K sampling steps, and level 0 is the original model's samples."""
from __future__ import annotations

import torch

from optbench.domains import get_domain
from optbench.models.checkpoints import load_model
from optbench.pressure import SOURCES, Context
from optbench.pressure.diffusion_finetune import DIFFUSION_FINETUNE, conditional_eps, draft_finetune
from optbench.pressure.guidance import ddim_sample, guided_samples, initial_noise, make_ddim
from optbench.proxies import as_proxy

DOM = "gmm2"


def _run(weight_l2=0.0, steps=16, lr=3e-4):
    dom = get_domain(DOM)
    model, proxy = load_model(DOM, "diffusion_mlp"), as_proxy(load_model(DOM, "proxy_mlp"))
    labels = torch.arange(64) % dom.num_classes
    x_T = initial_noise(64, 0, dom.shape)
    s = DIFFUSION_FINETUNE.defaults(lr=lr, batch_size=32, ddim_steps=10, weight_l2=weight_l2)
    levels = list(draft_finetune(Context.of(proxy, dom), model, x_T, labels, [0, steps], s))
    probs = [proxy(lv.x).log_softmax(1).gather(1, labels[:, None]).mean().item() for lv in levels]
    return levels, probs, model, x_T, labels


def test_draft_raises_the_reward_and_level_zero_is_the_original_model():
    levels, probs, model, x_T, labels = _run()
    assert probs[1] > probs[0] + 0.02, probs      # mean target log-probability of the outputs rises
    # Level 0: the untouched model's conditional DDIM samples (guidance's w = 1).
    dom = get_domain(DOM)
    s = SOURCES["guidance"].defaults(scales=[1.0], ddim_steps=10)
    (reference,) = guided_samples(model, labels, x_T, s, bounds=dom.bounds)
    torch.testing.assert_close(levels[0].x, reference.x, rtol=0, atol=1e-5)
    assert levels[0].values["param_l2"] == 0 and levels[1].values["param_l2"] > 0


def test_weight_penalty_keeps_the_weights_closer():
    free = _run(0.0, steps=8)[0][-1].values["param_l2"]
    held = _run(100.0, steps=8)[0][-1].values["param_l2"]
    assert held < 0.5 * free, (held, free)


def test_gradient_reaches_only_the_last_k_steps():
    """With K = 1 the loss depends on the weights through the last DDIM step alone: its
    gradient equals the gradient computed with the first steps' output held fixed."""
    model = load_model(DOM, "diffusion_mlp").requires_grad_(True)
    sched = make_ddim("none", getattr(model, "scheduler_config", None))
    x_T, labels = torch.randn(8, 2), torch.arange(8) % 4
    out = ddim_sample(conditional_eps(model, labels), x_T, sched, 5, "none", 1)
    (g1,) = torch.autograd.grad(out.sum(), model.out[1].weight)
    sched.set_timesteps(5)
    x = x_T * sched.init_noise_sigma
    with torch.no_grad():
        for t in list(sched.timesteps)[:-1]:
            x = sched.step(model(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    t = sched.timesteps[-1]
    last = sched.step(model(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    (g2,) = torch.autograd.grad(last.sum(), model.out[1].weight)
    torch.testing.assert_close(g1, g2)
    assert not ddim_sample(conditional_eps(model, labels), x_T, sched, 5, "none", 0).requires_grad
