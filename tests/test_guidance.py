"""Diffusion guidance: parity with diffusers' own DDIM loop, and the guidance algebra."""
import pytest
import torch

from optbench.models.checkpoints import load_model
from optbench.models.diffusion import SCHEDULER_CONFIG, null_class
from optbench.pressure.guidance import GUIDANCE_SOURCE, cfg_eps, guided_samples, initial_noise, make_ddim

STEPS = 5
NULL = 10   # MNIST's null label: the number of its classes


@pytest.fixture(scope="module")
def unet():
    return load_model("mnist", "diffusion_unet")


def sample(unet, labels, x_T, scales, guidance, clip, steps, classifier=None, **settings) -> dict:
    """{scale: outputs} of guided_samples with GUIDANCE_SOURCE's settings otherwise."""
    s = GUIDANCE_SOURCE.defaults(scales=scales, guidance=guidance, clip=clip, ddim_steps=steps, **settings)
    return {lv.knob: lv.x for lv in guided_samples(unet, labels, x_T, s, classifier)}


@pytest.fixture(scope="module")
def classifier():
    return load_model("mnist", "noisy_classifier")


def diffusers_loop(unet, x_T, labels, steps, clip_sample):
    """The DDIM loop as diffusers documents it, with a DDIM built from the DDPM config."""
    from diffusers import DDIMScheduler, DDPMScheduler
    scheduler = DDIMScheduler.from_config(DDPMScheduler(**SCHEDULER_CONFIG).config,
                                          clip_sample=clip_sample)
    scheduler.set_timesteps(steps)
    x = x_T
    for t in scheduler.timesteps:
        with torch.no_grad():
            eps = unet(x, t, class_labels=labels).sample
        x = scheduler.step(eps, t, x).prev_sample
    return (x + 1) / 2


@pytest.mark.parametrize("clip", ["none", "clip"])
def test_unguided_sampling_matches_diffusers_loop(unet, clip):
    labels = torch.arange(6) % 10
    x_T = initial_noise(6, seed=3)
    ours = sample(unet, labels, x_T, [1.0], "cfg", clip, STEPS)[1.0]
    theirs = diffusers_loop(unet, x_T, labels, STEPS, clip_sample=clip != "none")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_unconditional_is_w_zero(unet):
    assert null_class(unet) == NULL   # read from the model: its last class embedding
    labels = torch.arange(4) % 10
    x_T = initial_noise(4, seed=4)
    ours = sample(unet, labels, x_T, [0.0], "cfg", "none", STEPS)[0.0]
    theirs = diffusers_loop(unet, x_T, torch.full_like(labels, NULL), STEPS, False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_cfg_combines_the_two_predictions(unet):
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels, t = torch.tensor([1, 5, 7]), torch.tensor(500)
    with torch.no_grad():
        eps_c = unet(x, t, class_labels=labels).sample
        eps_u = unet(x, t, class_labels=torch.full_like(labels, NULL)).sample
    guided = cfg_eps(unet, labels, 3.0, (0, 999), "fp32")(x, t)
    torch.testing.assert_close(guided, eps_u + 3.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-4)
    outside = cfg_eps(unet, labels, 3.0, (0, 100), "fp32")(x, t)  # t outside the interval
    torch.testing.assert_close(outside, eps_c, atol=1e-6, rtol=0)


@pytest.mark.parametrize("base, cfg_w", [("cond", 1.0), ("uncond", 0.0)])
def test_classifier_guidance_at_zero_is_unguided(unet, classifier, base, cfg_w):
    labels = torch.arange(4) % 10
    x_T = initial_noise(4, seed=5)
    guided = sample(unet, labels, x_T, [0.0], "classifier", "none", STEPS, classifier, base=base)[0.0]
    plain = sample(unet, labels, x_T, [cfg_w], "cfg", "none", STEPS)[cfg_w]
    torch.testing.assert_close(guided, plain, atol=1e-6, rtol=0)


def test_classifier_guidance_raises_the_classifier_log_prob(unet, classifier):
    labels = torch.arange(10)
    x_T = initial_noise(10, seed=6)
    outs = sample(unet, labels, x_T, [0.0, 30.0], "classifier", "none", STEPS, classifier, base="uncond")
    def logp(x):
        t = torch.zeros(len(x), dtype=torch.long)
        return classifier(x * 2 - 1, t).log_softmax(1).gather(1, labels[:, None]).mean()
    assert logp(outs[30.0]) > logp(outs[0.0]) + 0.5


@pytest.mark.kernels
def test_a_sample_does_not_depend_on_its_batch(unet):
    """Bit-identical alone and at position 40 of a batch of 41 (fixed-shape chunks)."""
    labels = torch.arange(41) % 10
    x_T = initial_noise(41, seed=7)
    alone = initial_noise(1, seed=7)
    assert torch.equal(alone[0], x_T[0])
    batch = sample(unet, labels, x_T, [2.0], "cfg", "none", 2)[2.0]
    single = sample(unet, labels[40:], x_T[40:], [2.0], "cfg", "none", 2)[2.0]
    assert torch.equal(single[0], batch[40])


def test_clip_settings_build_the_declared_scheduler():
    assert make_ddim("none").config.clip_sample is False
    assert make_ddim("clip_eps").config.clip_sample is True
    with pytest.raises(ValueError, match="allowed: none, clip_eps, clip"):
        make_ddim("clamp")
