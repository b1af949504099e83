"""MNIST (and datasets in its IDX layout) from torchvision's files, with the released code's splits."""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import Tensor

from advnets.data.base import ImageDataModule, Labels, Splits, resolve_root
from advnets.errors import UserError

# Raw MNIST files in torchvision's layout: (size in bytes, md5) — the published IDX files, uncompressed.
MNIST_RAW = {
    "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
}


def _check_files(raw: Path, files: dict[str, tuple[int, str]], label: str) -> None:
    for name, (size, md5) in files.items():
        path = raw / name
        if not path.exists():
            continue
        actual = path.stat().st_size
        if actual != size:
            raise UserError(f"corrupt {label} file {path}: {actual} bytes, expected {size}")
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != md5:
            raise UserError(f"corrupt {label} file {path}: md5 {digest}, expected {md5}")


def load_idx_images(
    dataset_class: type, files: dict[str, tuple[int, str]], root: str | None, n_train: int, n_valid: int, download: bool
) -> Splits:
    """A torchvision IDX dataset (``MNIST`` or a subclass) split as the released code split MNIST.

    train = images 0..n_train-1 of the official training set, valid = the next n_valid, test = the official test
    set; pixels raw/255 as float32 in [0, 1]. Files present are checked against their sizes and md5 sums.
    """
    label = dataset_class.__name__
    folder = resolve_root(root)
    raw = folder / label / "raw"
    _check_files(raw, files, label)
    missing = [n for n in files if not (raw / n).exists()]
    if missing and not download:
        raise UserError(
            f"{label} files missing in {raw}: {', '.join(missing)}; put the four IDX files there "
            "(or set dataset.download=true to let torchvision fetch them)"
        )
    made = [p for p in (raw, raw.parent, folder) if not p.exists()]  # what a failed download must not leave
    try:
        train_set = dataset_class(str(folder), train=True, download=download)
        test_set = dataset_class(str(folder), train=False, download=download)
    except (RuntimeError, OSError) as err:
        for path in made:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise UserError(f"cannot load {label} into {raw}: {download_failure(err)}") from err
    _check_files(raw, files, label)
    if n_train + n_valid > len(train_set.data):
        raise UserError(f"dataset.n_train + dataset.n_valid = {n_train + n_valid}; allowed: <= {len(train_set.data)}")
    images = _unit_pixels(train_set.data)
    test = _unit_pixels(test_set.data)
    return Splits(images[:n_train], images[n_train : n_train + n_valid], test, (1, 28, 28))


def load_idx_labels(dataset_class: type, root: str | None, n_train: int, n_valid: int) -> Labels:
    """The class labels of ``load_idx_images``' splits (the files already there and checked: no download)."""
    folder = str(resolve_root(root))
    train = dataset_class(folder, train=True, download=False).targets.long()
    test = dataset_class(folder, train=False, download=False).targets.long()
    return Labels(train[:n_train], train[n_train : n_train + n_valid], test)


def download_failure(err: BaseException) -> str:
    """torchvision's download error on one line: which file, and each mirror's answer; then what to do."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Error downloading"):
        return (lines[0] if lines else type(err).__name__) + _WITHOUT_NETWORK
    answers = [line for line in lines[1:] if not line.startswith("Tried ")]
    head = lines[0].removeprefix("Error ").rstrip(":")
    return f"{head} failed ({'; '.join(dict.fromkeys(answers)) or 'no answer'})" + _WITHOUT_NETWORK


_WITHOUT_NETWORK = (
    "; without network, copy the four IDX files there, or set ADVNETS_DATA_DIR to a folder that holds them "
    "(in <dataset>/raw/), and dataset.download=false"
)


def _unit_pixels(data: Tensor) -> Tensor:
    return data.reshape(len(data), -1).float().div_(255.0)


def load_mnist(root: str | None, n_train: int, n_valid: int, download: bool = True) -> Splits:
    """MNIST with the paper's splits: train 0..n_train-1, valid the next n_valid, test the official 10k."""
    from torchvision.datasets import MNIST

    return load_idx_images(MNIST, MNIST_RAW, root, n_train, n_valid, download)


class MNISTData(ImageDataModule):
    """MNIST (``conf/dataset/mnist.yaml``): downloaded by torchvision when missing, checked by size and md5."""

    def fetch(self) -> None:
        load_mnist(self.root, self.n_train, self.n_valid, self.download)

    def read(self) -> Splits:
        return load_mnist(self.root, self.n_train, self.n_valid, download=self.download)

    def labels(self) -> Labels:
        """The digit (0-9) of each image."""
        from torchvision.datasets import MNIST

        self.load()
        return load_idx_labels(MNIST, self.root, self.n_train, self.n_valid)
