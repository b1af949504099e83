"""DCGAN-style nets (Radford et al. 2016) for 8x8 images: transposed convolutions up, strided convolutions down.

What advnets asks of a generator: a ``noise_dim`` attribute, and ``forward(z)`` giving flat pixel rows in [0, 1];
of a discriminator: ``masks(n, generator)`` (its dropout masks, drawn apart from the forward pass; none here) and
``forward(x, masks)`` giving one logit per row (advnets.nets.MaskedDropoutDiscriminator)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advnets.choices import Positive, Widths  # ranges advnets' schema checks before torch loads


class DCGANGenerator(nn.Module):
    """z -> a [channels[0], 2, 2] map -> one 4x4 stride-2 transposed convolution per entry of ``channels``, each
    doubling the side (batch norm and ReLU between) -> a sigmoid image 2 * 2**len(channels) on a side (8 for two
    entries), flattened."""

    def __init__(self, noise_dim: Positive, channels: Widths = (128, 64), image_channels: Positive = 1) -> None:
        super().__init__()
        self.noise_dim, self.start = noise_dim, channels[0]
        self.project = nn.Sequential(nn.Linear(noise_dim, channels[0] * 2 * 2), nn.BatchNorm1d(channels[0] * 4))
        layers: list[nn.Module] = [nn.ReLU()]
        widths = [*channels, image_channels]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            last = i == len(widths) - 2
            layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(c_out), nn.ReLU()]
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(len(z), self.start, 2, 2)
        return self.up(h).flatten(1)


class DCGANDiscriminator(nn.Module):
    """A flat image -> strided 4x4 convolutions, each halving the side (LeakyReLU 0.2) -> one logit.

    No batch norm: the game scores real and generated images in one batch, which batch statistics would mix."""

    def __init__(self, side: Positive = 8, channels: Widths = (64, 128), image_channels: Positive = 1) -> None:
        super().__init__()
        self.image_channels, self.side = image_channels, side
        layers: list[nn.Module] = []
        widths = [image_channels, *channels]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.down = nn.Sequential(*layers)
        self.out = nn.Linear(channels[-1] * (side // 2 ** len(channels)) ** 2, 1)

    def masks(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor | None]:
        """No dropout: no masks."""
        return []

    def forward(self, x: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        h = self.down(x.view(len(x), self.image_channels, self.side, self.side))
        return self.out(h.flatten(1)).squeeze(-1)
