"""scikit-learn's embedded 8x8 digits: no download, for quick runs and tests."""

from __future__ import annotations

import numpy as np
import torch

from advnets.data.base import ImageDataModule, Labels, Splits
from advnets.errors import UserError


def load_digits(n_train: int, n_valid: int) -> Splits:
    """scikit-learn's embedded 8x8 digits (1797 images, no download), pixels /16 into [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    images = torch.from_numpy(sk_digits().data.astype(np.float32) / 16.0)
    if n_train + n_valid >= len(images):
        raise UserError(f"dataset.n_train + dataset.n_valid = {n_train + n_valid}; allowed: < {len(images)}")
    return Splits(images[:n_train], images[n_train : n_train + n_valid], images[n_train + n_valid :], (1, 8, 8))


class DigitsData(ImageDataModule):
    """The 8x8 digits (``conf/dataset/digits.yaml``)."""

    def read(self) -> Splits:
        return load_digits(self.n_train, self.n_valid)

    def labels(self) -> Labels:
        """The digit (0-9) of each image; one pool, so the test labels are those after train + valid."""
        from sklearn.datasets import load_digits as sk_digits

        self.load()
        target = torch.from_numpy(sk_digits().target).long()
        end = self.n_train + self.n_valid
        return Labels(target[: self.n_train], target[self.n_train : end], target[end:])
