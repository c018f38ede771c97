"""Any image domain gets a diffusion model and a noise-aware classifier from the trainers
`optbench train <domain> --only diffusion_unet noisy_classifier` runs, sized from the
domain (here 3x24x24, 6 classes, null label 6), and both kinds of guidance run through
the `guidance` pressure source. MNIST's recipes stay frozen: every shipped manifest is
what the trainers would write today."""
import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from optbench.domains import DOMAINS, Domain, get_domain
from optbench.models.checkpoints import load_model, read_manifest
from optbench.models.diffusion import null_class, unet_config
from optbench.pressure import SOURCES, Context
from optbench.pressure.guidance import guided_samples, initial_noise
from optbench.training import other_trainers, train_domain

NAME, CLASSES, SHAPE = "anydiff_rgb6", 6, (3, 24, 24)
# One colour per class on a grey base, with pixel noise: learnable in a few steps.
PALETTE = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32)
QUIET = lambda *a, **k: None  # noqa: E731


class RGB6(Domain):
    name, num_classes, shape = NAME, CLASSES, SHAPE
    splits = {"proxy_train": 16, "generator_train": 16, "test": 4, "reference": 4}

    def load_pool(self):
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(CLASSES), sum(self.splits.values()))
        x = 0.15 + 0.7 * PALETTE[y][:, :, None, None] + rng.normal(0, 0.08, (len(y), *SHAPE))
        return np.clip(x, 0, 1).astype(np.float32), y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The two models of a new domain, by the trainers the CLI runs, at tiny sizes."""
    RGB6.checkpoints = tmp_path_factory.mktemp("anydiff")
    DOMAINS.register(NAME, RGB6, replace=True)
    try:
        trainers = other_trainers(NAME)
        unet_entry = trainers["diffusion_unet"](NAME, log=QUIET, steps=60, batch_size=16, lr=5e-3,
                                                ema_decay=0.9, bf16=False,
                                                arch_kwargs={"block_out_channels": [8, 16, 16], "norm_num_groups": 4})
        clf_entry = trainers["noisy_classifier"](NAME, log=QUIET, steps=150, batch_size=32,
                                                 arch_kwargs={"width": 8})
        yield unet_entry, clf_entry, load_model(NAME, "diffusion_unet"), load_model(NAME, "noisy_classifier")
    finally:
        DOMAINS.unregister(NAME)


def _trajectory(n, seed, **settings):
    """The guidance source's levels, as a cell runs it. It reads only the proxy's device:
    guidance pushes against the domain's own diffusion model and classifier."""
    source = SOURCES["guidance"]
    traj = source.run(Context.of(torch.nn.Identity(), NAME, n, seed), source.defaults(ddim_steps=5, **settings))
    return traj, {level.knob: level.x for level in traj.levels}


def test_the_unet_and_the_noisy_classifier_are_sized_from_the_domain(trained):
    unet_entry, clf_entry, unet, clf = trained
    assert unet.config.sample_size == 24 and unet.config.in_channels == unet.config.out_channels == 3
    assert unet.config.num_class_embeds == CLASSES + 1 and null_class(unet) == unet_entry["null_class"] == 6
    assert unet_entry["arch_kwargs"] == unet_config(SHAPE, CLASSES, block_out_channels=[8, 16, 16], norm_num_groups=4)
    assert clf_entry["arch_kwargs"] == {"width": 8, "in_shape": [3, 24, 24], "num_classes": 6}
    assert clf.convs[0].in_channels == 3 and clf.head.out_features == CLASSES
    assert clf_entry["test_accuracy"] >= 0.5        # chance is 1/6: the colours were learned
    x = torch.rand(2, *SHAPE)
    assert unet(x, torch.tensor(500), class_labels=torch.tensor([0, 6])).sample.shape == (2, *SHAPE)
    # `optbench train <domain> --only diffusion_unet noisy_classifier` offers both for
    # every image domain (the unknown name lists what is allowed).
    for name in ("mnist", "digits8", "faces"):
        assert {"diffusion_unet", "noisy_classifier"} <= set(other_trainers(name))
    with pytest.raises(ValueError, match="allowed: .*noisy_classifier, diffusion_unet"):
        train_domain("digits8", only=["diffusion_net"])


def test_classifier_free_guidance_through_the_guidance_source(trained):
    unet = trained[2]
    traj, levels = _trajectory(12, seed=3, guidance="cfg", scales=[0.0, 1.0, 3.0])
    assert list(levels) == [0.0, 1.0, 3.0] and traj.target.tolist() == [i % CLASSES for i in range(12)]
    for x in levels.values():
        assert x.shape == (12, *SHAPE) and torch.isfinite(x).all()
    assert not torch.allclose(levels[0.0], levels[1.0]) and not torch.allclose(levels[1.0], levels[3.0])
    # w = 0 is the unconditional model: label 6, the null label, for every sample.
    s = SOURCES["guidance"].defaults(guidance="cfg", scales=[1.0], ddim_steps=5)
    (null6,) = guided_samples(unet, torch.full((12,), 6), initial_noise(12, 3, SHAPE), s)
    torch.testing.assert_close(levels[0.0], null6.x, atol=1e-5, rtol=1e-5)


def test_classifier_guidance_raises_the_noisy_classifiers_target_probability(trained):
    clf = trained[3]
    traj, levels = _trajectory(12, seed=4, guidance="classifier", base="uncond", clip="clip_eps",
                               scales=[0.0, 100.0])
    for x in levels.values():
        assert x.shape == (12, *SHAPE) and torch.isfinite(x).all()

    def target_prob(x):   # the noisy classifier on the clean output (t = 0), model range
        with torch.no_grad():
            p = clf(x * 2 - 1, torch.zeros(len(x), dtype=torch.long)).softmax(1)
        return float(p.gather(1, traj.target[:, None]).mean())
    # On this machine 0.16 at scale 0 and 0.33 at 100 (chance 1/6).
    assert target_prob(levels[100.0]) > target_prob(levels[0.0]) + 0.05


def test_a_size_the_unet_cannot_take_is_refused_in_one_line(tmp_path):
    class Odd(RGB6):
        name, shape = "anydiff_odd", (3, 26, 26)
        checkpoints = tmp_path
    DOMAINS.register(Odd.name, Odd, replace=True)
    try:
        with pytest.raises(ValueError) as e:   # before any data is read or step is taken
            other_trainers(Odd.name)["diffusion_unet"](Odd.name, log=QUIET)
    finally:
        DOMAINS.unregister(Odd.name)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("domain 'anydiff_odd': shape (3, 26, 26)")
    assert "multiples of 4" in msg and "3x28x28" in msg
    with pytest.raises(ValueError, match=r"shape \(5,\): the diffusion UNet is for images"):
        unet_config((5,), 3)


def test_mnist_recipes_are_frozen_and_every_manifest_is_what_its_trainer_writes():
    """Cell ids and replicate hashes are made from MNIST's recipes: their bytes are pinned.
    Each shipped model a recipe trains is recorded with the arch_kwargs and recipe its
    trainer gives today (nothing trained here)."""
    from optbench.models.recipes import ENSEMBLE_PROXIES, ENSEMBLE_SEEDS, ensemble_kwargs, feature_ae_recipe, recipes_for
    from optbench.training.diffusion import diffusion_recipe, noisy_classifier_recipe
    from optbench.training.gan import gan_recipe
    mnist = json.dumps({k: asdict(v) for k, v in recipes_for("mnist").items()}, sort_keys=True)
    assert hashlib.sha256(mnist.encode()).hexdigest().startswith("b68aa12da29e4afd")
    assert unet_config((1, 28, 28), 10) == read_manifest("mnist")["models"]["diffusion_unet"]["arch_kwargs"]
    checked = 0
    for name in ("mnist", "digits8", "gmm2", "gmm64", "faces"):
        dom, manifest = get_domain(name), read_manifest(name)["models"]
        recipes = recipes_for(dom)
        want = {n: (r.arch, r.arch_kwargs, asdict(r)) for n, r in recipes.items()}
        if "proxy_cnn" in recipes:
            base = recipes["proxy_cnn"]
            want |= {n: ("ProxyEnsemble", ensemble_kwargs(base, len(ENSEMBLE_SEEDS), reduce),
                         {**asdict(base), "seeds": list(ENSEMBLE_SEEDS)}) for n, reduce in ENSEMBLE_PROXIES.items()}
        arch, kwargs, r = noisy_classifier_recipe(dom)
        want["noisy_classifier"] = (arch.__name__, kwargs, r)
        if dom.is_image:
            f = feature_ae_recipe(dom)
            want["feature_ae"] = (f["arch"], f["arch_kwargs"], {"role": "feature net", **f})
            r, g, d = gan_recipe(dom)
            want["gan_generator"] = ("DCGANGenerator", {"latent_dim": r["latent_dim"], "width": r["g_width"], **g}, r)
            want["gan_discriminator"] = ("DCGANDiscriminator", {"width": r["d_width"], **d}, r)
            r, config = diffusion_recipe(dom)
            want["diffusion_unet"] = ("UNet2DModel", config, r)
        for model, expected in want.items():
            if model in manifest:
                e = manifest[model]
                assert json.loads(json.dumps(expected)) == [e["arch"], e["arch_kwargs"], e.get("recipe")], (name, model)
                checked += 1
    assert checked == 53
