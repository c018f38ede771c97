"""A class-conditional DDPM built from diffusers' UNet2DModel, sized from the domain.

Labels 0..C-1 are the domain's C classes; label C, the last class embedding, is the null
label used for the unconditional prediction in classifier-free guidance (Ho and Salimans
2022): during training a label is replaced by the null label with probability
`p_uncond`. MNIST's UNet (1x28x28, 10 classes, null label 10) is `unet_config((1, 28,
28), 10)`."""
from __future__ import annotations

import torch

# The architecture, whatever the images: channels 32, 64, 64, one layer per block, no
# attention. `unet_config` adds the domain's size, channels and classes.
UNET_BLOCKS = {
    "block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
}
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "linear",
                    "beta_start": 1e-4, "beta_end": 0.02, "prediction_type": "epsilon"}


def unet_config(shape, num_classes: int, where: str = "", **blocks) -> dict:
    """UNet2DModel's config for images of `shape` (C, H, W) in `num_classes` classes:
    UNET_BLOCKS (or `blocks` in their place) with sample_size H (or [H, W] when H != W),
    C in and out channels, and num_classes + 1 class embeddings (the last, label
    num_classes, is the null label). Every down block but the last halves the height and
    width, and the up path concatenates the skips, so both must be multiples of
    2 ** (blocks - 1): 4 for three blocks (26 fails at 13 against 14). `where` names the
    domain in the error."""
    arch = {**UNET_BLOCKS, **blocks}
    where = f"{where}: " if where else ""
    if len(shape) != 3:
        raise ValueError(f"{where}shape {tuple(shape)}: the diffusion UNet is for images (C, H, W); a "
                         "vector domain's diffusion model is an MLPDenoiser (diffusion_mlp)")
    c, h, w = (int(v) for v in shape)
    m = 2 ** (len(arch["down_block_types"]) - 1)
    if h % m or w % m:
        fix = f"{c}x{-(-h // m) * m}x{-(-w // m) * m}"
        raise ValueError(f"{where}shape {tuple(shape)}: the diffusion UNet halves height and width "
                         f"{len(arch['down_block_types']) - 1} times, so both must be multiples of {m}; "
                         f"pad, crop or resize the images to multiples of {m} (e.g. {fix})")
    return {"sample_size": h if h == w else [h, w], "in_channels": c, "out_channels": c,
            **arch, "num_class_embeds": num_classes + 1}


def null_class(unet) -> int:
    """The null label of a class-conditional UNet: its last class embedding (labels
    0..C-1 are the classes)."""
    return int(unet.config.num_class_embeds) - 1


def build_unet(**config):
    """A UNet2DModel from its whole config (a manifest's arch_kwargs: `unet_config`'s)."""
    from diffusers import UNet2DModel
    return UNet2DModel(**config)


build_unet.proxy_kind = None   # a generator, not a proxy


def to_model_range(x: torch.Tensor, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The domain's values in `bounds` -> the model's [-1, 1] (pixels: x * 2 - 1)."""
    lo, hi = bounds
    return x * 2 - 1 if (lo, hi) == (0.0, 1.0) else (x - lo) * (2 / (hi - lo)) - 1


def to_pixels(x: torch.Tensor, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The model's [-1, 1] -> the domain's `bounds` (pixels: (x + 1) / 2)."""
    lo, hi = bounds
    return (x + 1) / 2 if (lo, hi) == (0.0, 1.0) else lo + (x + 1) * ((hi - lo) / 2)
