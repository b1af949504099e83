"""Datasets as in-memory tensors, served as shuffled index batches (no per-sample Python work per step)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from advnets.errors import UserError

# Raw MNIST files in torchvision's layout: (size in bytes, md5) — the published IDX files, uncompressed.
MNIST_RAW = {
    "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
}


@dataclass(frozen=True)
class Splits:
    """Train / validation / test images as flat float32 tensors in [0, 1]."""

    train: Tensor
    valid: Tensor
    test: Tensor
    image_shape: tuple[int, int, int]


def resolve_root(root: str | None) -> Path:
    """The data folder: ``root`` if given, else $ADVNETS_DATA_DIR, else ./data."""
    return Path(root or os.environ.get("ADVNETS_DATA_DIR") or "data").expanduser()


def _check_mnist_files(raw: Path) -> None:
    for name, (size, md5) in MNIST_RAW.items():
        path = raw / name
        if not path.exists():
            continue
        actual = path.stat().st_size
        if actual != size:
            raise UserError(f"corrupt MNIST file {path}: {actual} bytes, expected {size}")
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != md5:
            raise UserError(f"corrupt MNIST file {path}: md5 {digest}, expected {md5}")


def load_mnist(root: str | None, n_train: int, n_valid: int, download: bool = True) -> Splits:
    """MNIST with the paper's splits: train 0..n_train-1, valid the next n_valid, test the official 10k."""
    from torchvision.datasets import MNIST

    folder = resolve_root(root)
    raw = folder / "MNIST" / "raw"
    _check_mnist_files(raw)
    missing = [n for n in MNIST_RAW if not (raw / n).exists()]
    if missing and not download:
        raise UserError(
            f"MNIST files missing in {raw}: {', '.join(missing)}; put the four IDX files there "
            "(or set dataset.download=true to let torchvision fetch them)"
        )
    try:
        train_set = MNIST(str(folder), train=True, download=download)
        test_set = MNIST(str(folder), train=False, download=download)
    except (RuntimeError, OSError) as err:
        raise UserError(f"cannot load MNIST from {folder}: {str(err).splitlines()[0]}") from err
    _check_mnist_files(raw)
    if n_train + n_valid > len(train_set.data):
        raise UserError(f"dataset.n_train + dataset.n_valid = {n_train + n_valid}; allowed: <= 60000")
    images = train_set.data.reshape(len(train_set.data), -1).float().div_(255.0)
    test = test_set.data.reshape(len(test_set.data), -1).float().div_(255.0)
    return Splits(images[:n_train], images[n_train : n_train + n_valid], test, (1, 28, 28))


def load_digits(n_train: int, n_valid: int) -> Splits:
    """scikit-learn's embedded 8x8 digits (1797 images, no download), pixels /16 into [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    images = torch.from_numpy(sk_digits().data.astype(np.float32) / 16.0)
    if n_train + n_valid >= len(images):
        raise UserError(f"dataset.n_train + dataset.n_valid = {n_train + n_valid}; allowed: < {len(images)}")
    return Splits(images[:n_train], images[n_train : n_train + n_valid], images[n_train + n_valid :], (1, 8, 8))


class InMemory(Dataset):
    """A tensor indexed by whole index batches: ``ds[idx_tensor]`` is one gather."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: Tensor) -> Tensor:
        """``idx`` [B] -> images [B, D]; a group of batches ``idx`` [K, B] -> [K, B, D] in one gather."""
        rows = self.data.index_select(0, idx.reshape(-1).to(self.data.device))
        return rows.view(*idx.shape, *self.data.shape[1:])


class ShuffledIndexBatches(Sampler[Tensor]):
    """Index batches of a fresh permutation each epoch; this rank's share under DDP.

    The permutation depends only on (seed, epoch), so every rank agrees on it and a resumed run replays the
    same order without storing RNG state. Lightning calls ``set_epoch`` before each epoch.

    With ``group`` K > 1 it yields [K, B] index tensors, K consecutive batches of the same order at once (the
    game runs K updates per Lightning step); the epoch's last group holds the batches left over (fewer than
    K), so every batch of every epoch is used exactly as with K = 1. The epoch's indices move to ``device``
    once per epoch, so no batch waits on a host-to-device copy.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        group: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.group, self.device = rank, world, group, device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def n_batches(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __len__(self) -> int:
        return -(-self.n_batches // self.group)

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        nb = self.n_batches
        mine = order[: nb * self.batch_size * self.world].view(nb, self.world, self.batch_size)[:, self.rank]
        mine = mine.to(self.device)
        if self.group == 1:
            yield from mine.unbind(0)
            return
        for start in range(0, nb, self.group):
            yield mine[start : start + self.group]


class ImageDataModule(pl.LightningDataModule):
    """Holds a dataset's splits in memory (on the training device) and serves shuffled batches."""

    def __init__(
        self,
        name: str,
        batch_size: int,
        n_train: int,
        n_valid: int,
        root: str | None = None,
        download: bool = True,
        seed: int = 0,
        data_dim: int | None = None,
        updates_per_step: int = 1,
    ) -> None:
        super().__init__()
        if name not in ("mnist", "digits"):
            raise UserError(f"dataset.name={name!r}; allowed: mnist, digits")
        if batch_size <= 0:
            raise UserError(f"dataset.batch_size={batch_size}; allowed: a positive integer")
        self.updates_per_step = updates_per_step  # batches per Lightning step (game.updates_per_step)
        self.name, self.batch_size, self.n_train, self.n_valid = name, batch_size, n_train, n_valid
        self.root, self.download, self.seed = root, download, seed
        self.expected_dim = data_dim
        self.splits: Splits | None = None
        self._train: InMemory | None = None
        self._sampler: ShuffledIndexBatches | None = None

    def prepare_data(self) -> None:
        if self.name == "mnist":
            load_mnist(self.root, self.n_train, self.n_valid, self.download)

    def load(self) -> Splits:
        """Load (once) and validate the splits."""
        if self.splits is None:
            if self.name == "mnist":
                splits = load_mnist(self.root, self.n_train, self.n_valid, download=self.download)
            else:
                splits = load_digits(self.n_train, self.n_valid)
            if self.batch_size > len(splits.train):
                raise UserError(
                    f"dataset.batch_size={self.batch_size} is larger than the {len(splits.train)} training "
                    f"images of {self.name}; allowed: 1..{len(splits.train)}"
                )
            if self.expected_dim is not None and splits.train.shape[1] != self.expected_dim:
                raise UserError(
                    f"dataset.data_dim={self.expected_dim} but {self.name} images have {splits.train.shape[1]} pixels"
                )
            self.splits = splits
        return self.splits

    @property
    def data_dim(self) -> int:
        return self.load().train.shape[1]

    def setup(self, stage: str | None = None) -> None:
        splits = self.load()
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        self._train = InMemory(splits.train.to(device))
        self._sampler = ShuffledIndexBatches(
            len(splits.train), self.batch_size, self.seed, rank, world, self.updates_per_step, device
        )

    def train_dataloader(self) -> DataLoader:
        assert self._train is not None, "call setup() first"
        return DataLoader(self._train, sampler=self._sampler, batch_size=None)
