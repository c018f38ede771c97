"""A class-conditional DDPM (MNIST's is 28x28), built from diffusers' UNet2DModel.

Classes 0..9 are labels; class 10 is the null label used for the unconditional
prediction in classifier-free guidance (Ho and Salimans 2022): during training a label
is replaced by the null label with probability `p_uncond`."""
from __future__ import annotations

import torch

NULL_CLASS = 10
UNET_CONFIG = {
    "sample_size": 28, "in_channels": 1, "out_channels": 1,
    "block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "num_class_embeds": NULL_CLASS + 1,
}
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "linear",
                    "beta_start": 1e-4, "beta_end": 0.02, "prediction_type": "epsilon"}


def null_class(unet) -> int:
    """The null label of a class-conditional UNet: its last class embedding (labels
    0..C-1 are the classes; C = 10 for MNIST)."""
    return int(unet.config.num_class_embeds) - 1


def build_unet(**config):
    from diffusers import UNet2DModel
    return UNet2DModel(**{**UNET_CONFIG, **config})


build_unet.proxy_kind = None   # a generator, not a proxy


def to_model_range(x: torch.Tensor, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The domain's values in `bounds` -> the model's [-1, 1] (pixels: x * 2 - 1)."""
    lo, hi = bounds
    return x * 2 - 1 if (lo, hi) == (0.0, 1.0) else (x - lo) * (2 / (hi - lo)) - 1


def to_pixels(x: torch.Tensor, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The model's [-1, 1] -> the domain's `bounds` (pixels: (x + 1) / 2)."""
    lo, hi = bounds
    return (x + 1) / 2 if (lo, hi) == (0.0, 1.0) else lo + (x + 1) * ((hi - lo) / 2)
