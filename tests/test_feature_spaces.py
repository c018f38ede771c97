"""Distribution metrics in several feature spaces, and the autoencoder feature net."""

import numpy as np
import pytest
import torch

from optbench.domains import get_domain, referee_as_proxy_error

mnist = get_domain("mnist")
from optbench.models.checkpoints import load_model, read_manifest
from optbench.model_files import sha256_of
from optbench.domains.base import PACKAGED_CHECKPOINTS as PACKAGED
from optbench.referees import Referee
from optbench.referees.metrics import space_metrics
from optbench.proxies import class_readout as target_readout


def numpy_unbiased_mmd(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012; KID of Binkowski et al. 2018) with
    k(x, y) = (x.y / d + 1)^3, for samples of any sizes."""
    d = a.shape[1]
    kxx, kyy, kxy = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
    m, n = len(a), len(b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def perturbed(x: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    return (x + scale * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def direct_features(name: str, x: torch.Tensor) -> np.ndarray:
    """Features straight from the checkpoint, not through the referee's cache."""
    with torch.no_grad():
        return load_model("mnist", name).features(x).double().numpy()


def test_every_space_has_its_keys_and_the_primary_keeps_plain_names(referee):
    assert referee.spaces == mnist.feature_spaces and referee.spaces[0] == mnist.feature_net
    x, y = mnist.load_split("test")
    out = referee.evaluate(x[:32], y[:32], x[:32])
    for space in mnist.feature_spaces:
        for m in [m.name for m in space_metrics()]:
            key = m if space == mnist.feature_net else f"{m}@{space}"
            assert key in referee.metric_names() and np.isfinite(out[key]), key
    assert "diversity" in out and not any(k.startswith("diversity@") for k in out)
    assert set(out) == {"diverged_frac", "n_finite", *referee.metric_names()}


def test_kid_in_each_other_space_equals_an_independent_mmd(referee):
    """With 1,000 outputs against the 1,000 reference digits every KID subset is the whole
    set, so KID is exactly the unbiased MMD; with 128 outputs it averages 100 random
    reference subsets, within a few standard errors of the MMD against all of them."""
    x_ref, _ = mnist.load_split("reference")
    x_gen, _ = mnist.load_split("generator_train")
    big, small = perturbed(x_gen[:1000], 0.3, 0), perturbed(x_gen[1000:1128], 0.3, 1)
    out_big, out_small = referee.distribution(big), referee.distribution(small)
    for space in referee.spaces[1:]:
        ref = direct_features(space, x_ref)
        exact = numpy_unbiased_mmd(ref, direct_features(space, big))
        assert out_big[f"kid@{space}"] == pytest.approx(exact, rel=1e-6), space
        assert out_big[f"kid_std@{space}"] == pytest.approx(0, abs=1e-9 * abs(exact))
        full = numpy_unbiased_mmd(ref, direct_features(space, small))
        stderr = out_small[f"kid_std@{space}"] / np.sqrt(100)
        assert abs(out_small[f"kid@{space}"] - full) < 5 * stderr, space
        assert full > 10 * stderr    # the perturbation is visible, so the check has teeth


def test_a_one_space_referee_gives_that_space_plain_names(referee):
    robust = Referee("mnist", "proxy_cnn", features=("judge_robust",))
    x = perturbed(mnist.load_split("test")[0][:64], 0.2, 2)
    ours, everyone = robust.distribution(x), referee.distribution(x)
    for m in [m.name for m in space_metrics()]:
        assert ours[m] == pytest.approx(everyone[f"{m}@judge_robust"], rel=1e-9, abs=1e-12), m
    with pytest.raises(ValueError, match="features: expected distinct names from judge_bncnn"):
        Referee("mnist", "proxy_cnn", features=("proxy_cnn_w32",))


def test_judge_readouts_from_the_shared_forward_pass_equal_the_models_own(referee):
    x, y = mnist.load_split("test")
    x, t = perturbed(x[:40], 0.3, 3), (y[:40] + 1) % 10
    out = referee.evaluate(x, t, x)
    for name in mnist.judges:
        with torch.no_grad():
            prob = target_readout(load_model("mnist", name)(x), t)["prob"]
        assert out[f"{name}_prob"] == pytest.approx(float(prob.double().mean()), rel=1e-6), name


@pytest.mark.parametrize("name", mnist.feature_spaces)
def test_every_feature_space_is_refused_as_a_proxy(name):
    assert referee_as_proxy_error("mnist", name) is not None
    with pytest.raises(ValueError, match="is a referee"):
        Referee("mnist", name)


def test_feature_ae_loads_through_the_manifest_and_reconstructs_digits_not_noise():
    entry = read_manifest("mnist")["models"]["feature_ae"]
    assert sha256_of(PACKAGED / "mnist" / entry["file"]) == entry["sha256"]
    ae = load_model("mnist", "feature_ae")
    x_test, _ = mnist.load_split("test")
    noise = torch.rand(x_test.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        digits = float(((ae(x_test) - x_test) ** 2).mean())
        rubbish = float(((ae(noise) - noise) ** 2).mean())
        codes = ae.features(mnist.load_split("judge_train")[0])
    assert digits == pytest.approx(entry["test_reconstruction_mse"], abs=1e-5)
    assert digits < 0.02 and digits < rubbish / 10
    assert codes.shape[1] == entry["arch_kwargs"]["latent"]
    # standardized on its training split, so KID's kernel sees unit-scale features
    torch.testing.assert_close(codes.mean(0), torch.zeros(codes.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(codes.std(0), torch.ones(codes.shape[1]), atol=1e-4, rtol=0)
