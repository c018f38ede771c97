"""A user's local diffusers model folder as the guidance source's generator: any number
of classes (its last class embedding is the null label), its own scheduler config, the
domain's image shape, and the folder's sha256 in the cell id."""
import json

import numpy as np
import pytest
import torch

from optbench.domains import DOMAINS, Domain


def _folder(path, classes=3):
    from diffusers import DDPMScheduler, UNet2DModel
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=classes + 1)
    unet.save_pretrained(str(path), safe_serialization=True)
    DDPMScheduler(num_train_timesteps=100, beta_schedule="linear").save_pretrained(str(path / "scheduler"))
    return unet


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unet")
    _folder(folder / "unet")

    class Tiny(Domain):
        name, num_classes, shape = "diffusers_tiny", 3, (1, 8, 8)
        splits = {"test": 10, "reference": 10}
        checkpoints = folder
        models = {"diffusion_unet": {"diffusers": "unet"}}
        default_proxy, judges, ensemble, feature_spaces = "diffusion_unet", (), (), ()

        def load_pool(self):
            g = np.random.default_rng(0)
            return g.random((60, 1, 8, 8)).astype(np.float32), np.repeat(np.arange(3), 20)
    DOMAINS.register(Tiny.name, Tiny, replace=True)
    return DOMAINS[Tiny.name], folder


def test_guidance_runs_a_local_diffusers_folder_with_its_own_classes_and_scheduler(domain):
    from optbench.models.checkpoints import load_model
    from optbench.pressure import SOURCES, Context
    from optbench.proxies import ClassifierProxy
    dom, _ = domain
    unet = load_model(dom, "diffusion_unet")
    assert unet.config.num_class_embeds == 4 and unet.scheduler_config["num_train_timesteps"] == 100
    proxy = ClassifierProxy(torch.nn.Linear(1, 1))   # guidance does not read the proxy
    settings = SOURCES["guidance"].defaults(scales=[0.0, 2.0], ddim_steps=3)
    traj = SOURCES["guidance"].run(Context(proxy, dom, 5, 0), settings)
    levels = list(traj.levels)
    assert [lv.knob for lv in levels] == [0.0, 2.0]
    assert levels[0].x.shape == (5, 1, 8, 8) and traj.target.tolist() == [0, 1, 2, 0, 1]
    assert not torch.equal(levels[0].x, levels[1].x)   # the scale changes the samples


def test_the_folder_hash_guards_it_and_a_pickle_only_folder_is_refused(domain, tmp_path):
    from optbench.models.checkpoints import load_diffusers_unet, model_hash
    from optbench.errors import CheckpointError
    dom, folder = domain
    assert len(model_hash(dom, "diffusion_unet")) == 64
    config = folder / "unet" / "config.json"
    original = config.read_text()
    config.write_text(json.dumps({**json.loads(original), "sample_size": 16}))
    try:
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            load_diffusers_unet(folder / "unet", model_hash(dom, "diffusion_unet"))
    finally:
        config.write_text(original)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.bin: a pickle-based file is never loaded"):
        load_diffusers_unet(tmp_path, "0" * 64)
