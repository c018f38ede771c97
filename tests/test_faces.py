"""The faces domain's renderer and its projection: the gold referee of a rendered domain
is only as good as the projection that finds a face's latent."""
from __future__ import annotations

import numpy as np
import torch

from optbench.gold.faces import LATENTS, NOISE, attribute, project, render, sample


def test_renderer_gradient_matches_finite_differences():
    z = torch.from_numpy(np.random.default_rng(0).uniform(-0.9, 0.9, (3, LATENTS)))
    assert torch.autograd.gradcheck(lambda v: render(v).sum((1, 2, 3)), (z.requires_grad_(True),),
                                    eps=1e-6, atol=1e-5)


def test_projection_recovers_the_true_latent_of_real_faces():
    """Stated success rate: at least 95% of real faces projected to within 0.1 of their
    latent in every coordinate (of a range of 2), and 95% keep their smile/no-smile."""
    x, _, z = sample(64, np.random.default_rng(5))
    found, err = project(torch.from_numpy(x))
    z = torch.from_numpy(z).float()
    assert ((found - z).abs().amax(1) < 0.1).double().mean() >= 0.95
    assert (attribute(found) == attribute(z)).double().mean() >= 0.95
    # The residual of a real face is its noise: about NOISE per pixel, never far above.
    assert NOISE * 0.9 < float(err.median()) < NOISE * 1.1


def test_off_manifold_images_are_far_from_every_face():
    x, _, _ = sample(16, np.random.default_rng(6))
    x = torch.from_numpy(x)
    stripes = x.clone()
    stripes[..., ::4] = 1.0                      # a face with bright vertical stripes
    noise = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    _, real_err = project(x)
    _, stripe_err = project(stripes)
    _, noise_err = project(noise)
    assert stripe_err.min() > 3 * real_err.max()
    assert noise_err.min() > 5 * real_err.max()
