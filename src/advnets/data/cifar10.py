"""CIFAR-10 as the released code read it (pylearn2 ``CIFAR10`` with ``gcn: 55.``), from the python pickle batches.

torchvision downloads the archive on a user's machine (``dataset.download=true``); the batches are then read
here (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``: pickles of ``data`` uint8 [10000, 3072] in
channel-major order, and ``labels``). Each batch is a pickle, so it is unpickled only once its md5 sum is the
published one (``BATCH_MD5``): a batch that is not the published file is refused before it is opened as a pickle.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advnets.data.base import ImageDataModule, Labels, Splits, resolve_root
from advnets.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""The published md5 sums of the python version's batches (those torchvision's ``CIFAR10`` checks too)."""


def global_contrast_normalize(x: Tensor, scale: float, min_divisor: float = 1e-8) -> Tensor:
    """pylearn2's ``global_contrast_normalize`` with its defaults (subtract_mean, L2 norm, sqrt_bias 0).

    Per image: subtract its mean over pixels, then divide by its L2 norm / ``scale`` (a divisor below
    ``min_divisor`` is replaced by 1). Each image ends with mean 0 and L2 norm ``scale``.
    """
    centred = x - x.mean(dim=1, keepdim=True)
    divisor = centred.pow(2).sum(dim=1, keepdim=True).sqrt() / scale
    divisor = torch.where(divisor < min_divisor, torch.ones_like(divisor), divisor)
    return centred / divisor


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_batches(folder: Path) -> None:
    """Every batch present, each with its published md5 sum (``BATCH_MD5``), before any is unpickled."""
    for name in [*TRAIN_BATCHES, TEST_BATCH]:
        path = folder / name
        if not path.is_file():
            raise UserError(f"CIFAR-10 batch missing: {path}; set dataset.download=true to let torchvision fetch it")
        digest, published = _md5(path), BATCH_MD5[name]
        if digest != published:
            raise UserError(
                f"corrupt CIFAR-10 batch {path}: md5 {digest}, expected {published} (not unpickled: a batch other "
                "than the published file could run code when opened)"
            )


def _entry(path: Path, key: str) -> np.ndarray:
    """``key`` of one CIFAR-10 python batch, already checked by ``check_batches``; a clear error for anything else."""
    try:
        with path.open("rb") as f:
            blob = pickle.load(f, encoding="latin1")
    except Exception as err:  # truncated or not a pickle: pickle raises many types
        raise UserError(f"cannot read CIFAR-10 batch {path}: {type(err).__name__}: {err}") from None
    if not isinstance(blob, dict) or key not in blob:
        found = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise UserError(f"CIFAR-10 batch {path} has no {key!r} (found {found}); expected the python version's batches")
    return np.asarray(blob[key])


def read_batch(path: Path) -> np.ndarray:
    """One checked CIFAR-10 python batch's ``data`` as uint8 [n, 3072]."""
    data = _entry(path, "data")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"CIFAR-10 batch {path}: data is {data.dtype} {list(data.shape)}; expected uint8 [n, 3072]")
    return data


def read_labels(path: Path) -> np.ndarray:
    """One checked CIFAR-10 python batch's ``labels`` (0..9) as int64 [n]."""
    labels = _entry(path, "labels").astype(np.int64)
    if labels.ndim != 1 or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise UserError(f"CIFAR-10 batch {path}: labels are not one class 0..9 per image")
    return labels


def load_cifar10(root: str | None, n_train: int, n_valid: int, gcn: float | None) -> Splits:
    """Train = images 0..n_train-1 of the 50k training images, valid = the next n_valid, test = the 10k test images.

    Pixels are raw 0..255 as float32, then (``gcn`` not null) global contrast normalised per image with that
    scale, as pylearn2's ``CIFAR10(gcn=55.)`` does (before the start/stop split; GCN is per image, so the order
    does not matter). ``gcn: null`` gives pixels /255 in [0, 1] instead.
    """
    folder = resolve_root(root) / FOLDER
    check_batches(folder)
    train = np.concatenate([read_batch(folder / name) for name in TRAIN_BATCHES])
    test = read_batch(folder / TEST_BATCH)
    if n_train + n_valid > len(train):
        raise UserError(f"dataset.n_train + dataset.n_valid = {n_train + n_valid}; allowed: <= {len(train)}")
    images, test_images = (_pixels(torch.from_numpy(a), gcn) for a in (train, test))
    return Splits(images[:n_train], images[n_train : n_train + n_valid], test_images, IMAGE_SHAPE)


def _pixels(data: Tensor, gcn: float | None) -> Tensor:
    x = data.float()
    return x.div_(255.0) if gcn is None else global_contrast_normalize(x, gcn)


class CIFAR10Data(ImageDataModule):
    """CIFAR-10 (``conf/dataset/cifar10.yaml``); ``gcn`` is the global contrast normalisation scale (or null)."""

    def __init__(self, *args, gcn: float | None = 55.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if gcn is not None and not gcn > 0:
            raise UserError(f"dataset.gcn={gcn}; allowed: a number > 0, or null for pixels /255")
        self.gcn = gcn

    def fetch(self) -> None:
        folder = resolve_root(self.root)
        if self.download and not all((folder / FOLDER / n).is_file() for n in [*TRAIN_BATCHES, TEST_BATCH]):
            from torchvision.datasets import CIFAR10

            try:
                CIFAR10(str(folder), train=True, download=True)
            except (RuntimeError, OSError) as err:
                raise UserError(f"cannot download CIFAR-10 into {folder}: {str(err).splitlines()[0]}") from err

    def read(self) -> Splits:
        self.fetch()
        return load_cifar10(self.root, self.n_train, self.n_valid, self.gcn)

    def labels(self) -> Labels:
        """The class (0-9: airplane .. truck) of each image, from the same checked batches."""
        self.load()
        folder = resolve_root(self.root) / FOLDER
        train = torch.from_numpy(np.concatenate([read_labels(folder / name) for name in TRAIN_BATCHES]))
        test = torch.from_numpy(read_labels(folder / TEST_BATCH))
        end = self.n_train + self.n_valid
        return Labels(train[: self.n_train], train[self.n_train : end], test)
