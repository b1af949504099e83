"""Noise and samples: what training, the monitors and the evaluation draw from G, on any device."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advnets.choices import Noise

"""The noise z is drawn from (``game.noise``)."""


def sample_noise(n: int, dim: int, kind: Noise, device: torch.device | str, generator: torch.Generator) -> Tensor:
    """``uniform``: U(-sqrt 3, sqrt 3) (unit variance, the released code); ``gaussian``: N(0, 1)."""
    if kind == "uniform":
        return (torch.rand(n, dim, device=device, generator=generator) * 2.0 - 1.0) * math.sqrt(3.0)
    return torch.randn(n, dim, device=device, generator=generator)


def noise_from_seed(n: int, dim: int, kind: Noise, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """``n`` noise vectors drawn on the CPU from ``seed``, then moved: the same z on every device."""
    return sample_noise(n, dim, kind, "cpu", torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def generate(generator: torch.nn.Module, z: Tensor, batch: int = 2000) -> Tensor:
    """G(z) in eval mode, in batches."""
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(z[i : i + batch]) for i in range(0, len(z), batch)])
    generator.train(was_training)
    return out
