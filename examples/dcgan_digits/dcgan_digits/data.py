"""A dataset of one's own: the 8x8 digits, each also moved by one pixel up, down, left and right (5x the images).

What advnets asks of a dataset: a subclass of ``advnets.data.ImageDataModule`` whose ``read()`` gives the splits as
flat float32 rows in [0, 1]; ``labels()`` (optional) gives their classes, so ``advnets-classifier`` can train the
domain classifier that the metrics beyond Parzen read."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from advnets.data import ImageDataModule, Labels, Splits
from advnets.errors import UserError

SIDE = 8
SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # (rows, columns): the image itself, then up, down, left, right


def nudge(images: Tensor) -> Tensor:
    """[N, 64] -> [5N, 64]: the images, then each shift of all of them (the pixels moved in are 0)."""
    grid = images.view(-1, SIDE, SIDE)
    moved = []
    for dy, dx in SHIFTS:
        out = torch.zeros_like(grid)
        ys, yd = slice(max(-dy, 0), SIDE - max(dy, 0)), slice(max(dy, 0), SIDE - max(-dy, 0))
        xs, xd = slice(max(-dx, 0), SIDE - max(dx, 0)), slice(max(dx, 0), SIDE - max(-dx, 0))
        out[:, yd, xd] = grid[:, ys, xs]
        moved.append(out.reshape(-1, SIDE * SIDE))
    return torch.cat(moved)


class NudgedDigits(ImageDataModule):
    """scikit-learn's digits split first (train, valid, test as advnets' ``digits``), then each split nudged, so no
    shifted copy of a test image is ever trained on."""

    def _pool(self) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        if self.n_train + self.n_valid >= len(digits.data):
            raise UserError(f"dataset.n_train + dataset.n_valid = {self.n_train + self.n_valid}; allowed: < 1797")
        images = torch.from_numpy(digits.data.astype(np.float32) / 16.0)
        return images, torch.from_numpy(digits.target).long()

    def _cuts(self) -> tuple[slice, slice, slice]:
        end = self.n_train + self.n_valid
        return slice(0, self.n_train), slice(self.n_train, end), slice(end, None)

    def read(self) -> Splits:
        images, _ = self._pool()
        train, valid, test = (nudge(images[cut]) for cut in self._cuts())
        return Splits(train, valid, test, (1, SIDE, SIDE))

    def labels(self) -> Labels:
        _, target = self._pool()
        train, valid, test = (target[cut].repeat(len(SHIFTS)) for cut in self._cuts())
        return Labels(train, valid, test)
