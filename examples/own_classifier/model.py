"""The user's classifier: a small MLP on 28x28 digits. Any nn.Module works: optbench
imports it as model:MLP (from --pythonpath) and calls it on (batch, 1, 28, 28) pixels in
[0, 1], expecting (batch, 10) logits."""
import torch


class MLP(torch.nn.Module):
    def __init__(self, width: int = 128, classes: int = 10):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
