"""Train the MLP on MNIST's proxy_train split, as exported by

    optbench splits mnist --export data

and save its weights as safetensors (a state_dict; never a pickle). About 10 s on 2 cores.

    python train.py [--data data/mnist_proxy_train.npz] [--out mlp.safetensors] [--steps 600]
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from model import MLP

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(HERE / "data" / "mnist_proxy_train.npz"))
    p.add_argument("--out", default=str(HERE / "mlp.safetensors"))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--width", type=int, default=128)
    a = p.parse_args(argv)
    with np.load(a.data, allow_pickle=False) as d:
        x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).long()
    torch.manual_seed(0)
    net = MLP(width=a.width)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for step in range(a.steps):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = float((net(x).argmax(1) == y).float().mean())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, a.out)
    print(f"wrote {a.out} (training accuracy {accuracy:.3f} on {len(x)} examples, final loss {loss.item():.3f})")


if __name__ == "__main__":
    main()
