"""Make the rgb5 example's data and the user's models (seconds), then train optbench's
judges and feature nets for the new domain (a few minutes on 2 CPU cores):

    .venv/bin/python examples/rgb5/prepare.py
    .venv/bin/optbench run examples/rgb5/suite.toml --out results

1. data/<class>/*.png: 5 classes of 32x32 RGB images (a filled disc, square, triangle,
   cross, horizontal stripes), random colour, size and position, with pixel noise.
2. models/my_classifier.safetensors: the user's TinyConvNet, trained here on the
   domain's proxy_train split; models/my_generator.safetensors: a PCA generator fitted
   to generator_train. Both are declared in suite.toml by import path.
3. optbench's own referees for the domain, sized from its shape: `train_domain`
   writes judge_bncnn, judge_mlp and feature_ae to models/manifest.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CLASSES = ("disc", "square", "triangle", "cross", "stripes")
PER_CLASS, SIZE = 120, 32


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = rng.uniform(6, 11)
    cy, cx = rng.uniform(r, SIZE - r, 2)
    if kind == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
    elif kind == "square":
        mask = (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8)
    elif kind == "triangle":
        mask = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - cy + r) / 2)
    elif kind == "cross":
        mask = ((abs(yy - cy) <= r / 4) & (abs(xx - cx) <= r)) | ((abs(xx - cx) <= r / 4) & (abs(yy - cy) <= r))
    else:
        mask = ((yy // 4) % 2 == 0) & (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    background, colour = rng.uniform(0, 0.4, 3), rng.uniform(0.5, 1.0, 3)
    img = np.where(mask[..., None], colour, background) + rng.normal(0, 0.05, (SIZE, SIZE, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_pngs(root: Path) -> None:
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            Image.fromarray(draw(kind, rng)).save(root / kind / f"{i:03d}.png")


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int = 40):
    sys.path.insert(0, str(HERE))
    from rgb5_plugin import TinyConvNet
    torch.manual_seed(0)
    model = TinyConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main() -> None:
    from optbench.domains import get_domain
    from optbench.suite import load_context, load_suite
    from optbench.training import train_domain
    make_pngs(HERE / "data")
    (HERE / "models").mkdir(exist_ok=True)
    # The suite's cells need the models made below, so declare only its domain for now.
    load_context(HERE / "suite.toml")
    dom = get_domain("rgb5")
    x, y = dom.load_split("proxy_train")
    clf = train_classifier(x, y)
    xt, yt = dom.load_split("test")
    print(f"my_classifier: test accuracy {(clf(xt).argmax(1) == yt).float().mean():.3f}")
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(HERE / "models" / "my_classifier.safetensors"))
    from rgb5_plugin import PCAGenerator
    gen = PCAGenerator.fit(dom.load_split("generator_train")[0])
    save_file({k: v.detach().contiguous() for k, v in gen.state_dict().items()}, str(HERE / "models" / "my_generator.safetensors"))
    train_domain(dom, only=["judge_bncnn", "judge_mlp", "feature_ae"], log=lambda *a: None)
    load_suite(HERE / "suite.toml")   # the whole suite now parses: every model is there
    print(f"wrote {HERE / 'data'} and {HERE / 'models'}; next: optbench run {HERE / 'suite.toml'}")


if __name__ == "__main__":
    main()
