"""The in-memory data module and its shuffled index batches; each dataset subclasses it with its own ``read``.

No per-sample Python work per step: a dataset is one tensor on the training device, indexed by whole batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from advnets.errors import UserError


@dataclass(frozen=True)
class Splits:
    """Train / validation / test images as flat float32 rows: pixels in [0, 1], or contrast-normalised (cifar10)."""

    train: Tensor
    valid: Tensor
    test: Tensor
    image_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Labels:
    """Class labels (int64, 0..K-1) of the train / validation / test images, in the order :class:`Splits` holds them."""

    train: Tensor
    valid: Tensor
    test: Tensor

    @property
    def n_classes(self) -> int:
        return int(max(int(part.max()) for part in (self.train, self.valid, self.test) if len(part))) + 1


def resolve_root(root: str | None) -> Path:
    """The data folder: ``root`` if given, else $ADVNETS_DATA_DIR, else ./data."""
    return Path(root or os.environ.get("ADVNETS_DATA_DIR") or "data").expanduser()


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
    """Holds a dataset's splits in memory (on the training device) and serves shuffled batches.

    Each dataset is a subclass (chosen by ``_target_`` in ``conf/dataset/``) that implements ``read`` and, when
    it downloads, ``fetch``; ``name`` labels the dataset in messages and results and names its domain classifier.
    What else the rest of advnets needs to know of a dataset it asks here, never by its name: its class labels
    (``labels``, for ``advnets-classifier``), its image shape, the real images figures compare samples with
    (``reference_images``) and what a result records of it (``record``: a fold, say).
    """

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
        if batch_size <= 0:
            raise UserError(f"dataset.batch_size={batch_size}; allowed: a positive integer")
        self.updates_per_step = updates_per_step  # batches per Lightning step (game.updates_per_step)
        self.name, self.batch_size, self.n_train, self.n_valid = name, batch_size, n_train, n_valid
        self.root, self.download, self.seed = root, download, seed
        self.expected_dim = data_dim
        self.splits: Splits | None = None
        self._train: InMemory | None = None
        self._sampler: ShuffledIndexBatches | None = None

    def read(self) -> Splits:
        """This dataset's train / valid / test splits (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.name}) does not implement read()")

    def labels(self) -> Labels | None:
        """The class labels of ``load()``'s splits, or None: this dataset has none (the default), so no domain
        classifier can be trained on it."""
        return None

    def record(self) -> dict[str, Any]:
        """What an evaluation's ``results.json`` records of this dataset: its name, and whatever else tells its
        numbers apart from another part of the same data (TFD: its fold)."""
        return {"dataset": self.name}

    def reference_images(self, n: int) -> Tensor:
        """The real images figures set beside ``n`` samples: the first ``n`` training images."""
        return self.load().train[:n]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return self.load().image_shape

    def fetch(self) -> None:
        """Download what ``read`` needs (on one process, before ``setup``); nothing by default."""

    def prepare_data(self) -> None:
        self.fetch()

    def load(self) -> Splits:
        """Load (once) and validate the splits."""
        if self.splits is None:
            splits = self.read()
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
