"""The paper's fully connected generator: z -> ReLU/sigmoid hidden layers -> pixels.

A plain ``nn.Module``; sizes and init ranges come from the config (``conf/model/``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Generator(nn.Module):
    """z -> hidden ReLU layers -> sigmoid pixels; the output bias starts at the logit of the mean image."""

    def __init__(
        self,
        noise_dim: int,
        hidden: Sequence[int],
        data_dim: int,
        init_range: float,
        hidden_activation: str = "relu",
    ) -> None:
        super().__init__()
        activations = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
        if hidden_activation not in activations:
            raise ValueError(f"model.generator.hidden_activation={hidden_activation!r}; allowed: relu, sigmoid")
        self.noise_dim, self.data_dim = noise_dim, data_dim
        layers: list[nn.Module] = []
        width = noise_dim
        for units in hidden:
            layers += [nn.Linear(width, units), activations[hidden_activation]()]
            width = units
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, data_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: Tensor, eps: float = 1e-7) -> None:
        """Set the output bias to logit(clip(mean)), so an untrained G already draws the mean image."""
        p = pixel_mean.to(self.out.bias).clamp(eps, 1 - eps)
        self.out.bias.copy_(torch.log(p) - torch.log1p(-p))

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.out(self.body(z)))
