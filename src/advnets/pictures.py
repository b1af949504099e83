"""Pictures people look at: sample grids, Figure 2 (samples beside their nearest neighbour), Figure 3 (z lines)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from advnets.runs import atomic


def to_images(flat: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Flat pixel rows -> a [n, c, h, w] image batch in [0, 1] on the CPU.

    Rows in [0, 1] are shown as they are; a batch with values outside (e.g. contrast-normalised CIFAR-10) is
    shown as pylearn2's ``adjust_for_viewer`` showed it: each image divided by its largest |value|, then
    [-1, 1] mapped to [0, 1].
    """
    x = flat.detach().float().cpu()
    if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        x = x / x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) * 0.5 + 0.5
    return x.clamp(0, 1).reshape(-1, *shape)


def save_grid(flat: Tensor, shape: tuple[int, int, int], path: Path, nrow: int = 10) -> Path:
    """Save images as one grid PNG (torchvision's ``make_grid``)."""
    with atomic.atomic_open(path, "wb") as handle:
        save_image(make_grid(to_images(flat, shape), nrow=nrow, padding=2, pad_value=1.0), handle, format="png")
    return path


def save_nearest_neighbours(
    samples: Tensor, neighbours: Tensor, shape: tuple[int, int, int], path: Path, per_row: int = 6
) -> Path:
    """Figure 2 of the paper: each sample followed by its nearest training example, pairs laid out in rows."""
    pairs = torch.stack([to_images(samples, shape), to_images(neighbours, shape)], dim=1).flatten(0, 1)
    return save_grid(pairs, shape, path, nrow=2 * per_row)


def interpolation_z(z_start: Tensor, z_end: Tensor, steps: int) -> Tensor:
    """Figure 3 of the paper: ``steps`` points on the line from each ``z_start[i]`` to ``z_end[i]``, row by row.

    Row i holds ``(1 - t) z_start[i] + t z_end[i]`` for t = 0, 1/(steps-1), ..., 1; returns [rows * steps, d].
    """
    t = torch.linspace(0.0, 1.0, steps, device=z_start.device, dtype=z_start.dtype).view(1, steps, 1)
    return ((1 - t) * z_start.unsqueeze(1) + t * z_end.unsqueeze(1)).flatten(0, 1)


def save_interpolation(images: Tensor, shape: tuple[int, int, int], path: Path, steps: int) -> Path:
    """Figure 3: the generator's images along each interpolation, one row per pair of end points."""
    return save_grid(images, shape, path, nrow=steps)
