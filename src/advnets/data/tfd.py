"""The Toronto Face Database as pylearn2's ``TFD`` class reads it (``TFD_48x48.mat``, supplied by the user).

The .mat holds ``images`` [N, 48, 48] (grey levels 0..255) and ``folds`` [N, 5]: for each of the 5 official
folds, 0 = unlabeled, 1 = train, 2 = valid, 3 = test (pylearn2's ``mapper``; ``full_train`` = train + valid).
Pixels are /255 (``scale: True`` in the released yamls). TFD cannot be downloaded: the file must be put at
``<data dir>/TFD/TFD_48x48.mat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from advnets.data.base import ImageDataModule, Splits, resolve_root
from advnets.errors import UserError

SETS = {"unlabeled": (0,), "train": (1,), "valid": (2,), "test": (3,), "full_train": (1, 2)}  # pylearn2 TFD.mapper
N_FOLDS = 5
SIDE = 48


def tfd_path(root: str | None) -> Path:
    """Where the user puts TFD (pylearn2 used ``${PYLEARN2_DATA_PATH}/faces/TFD/TFD_48x48.mat``)."""
    return resolve_root(root) / "TFD" / "TFD_48x48.mat"


def read_tfd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``images`` [N, 48, 48] and ``folds`` [N, 5] from the .mat; one clear line for anything else."""
    if not path.is_file():
        raise UserError(
            f"TFD not found: put TFD_48x48.mat at {path} (the Toronto Face Database is not downloadable; "
            "ask its authors for it)"
        )
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=["images", "folds"])
    except Exception as err:  # not a .mat, or a v7.3 (HDF5) one: scipy raises many types
        raise UserError(f"cannot read TFD file {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    missing = [key for key in ("images", "folds") if key not in mat]
    if missing:
        raise UserError(
            f"TFD file {path} lacks {', '.join(missing)}; expected keys images [N, 48, 48] and folds [N, 5]"
        )
    images, folds = mat["images"], mat["folds"]
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise UserError(f"TFD file {path}: images has shape {list(images.shape)}; expected [N, {SIDE}, {SIDE}]")
    if folds.shape != (len(images), N_FOLDS):
        raise UserError(f"TFD file {path}: folds has shape {list(folds.shape)}; expected [{len(images)}, {N_FOLDS}]")
    return images, folds


def load_tfd(root: str | None, fold: int, train_set: str = "unlabeled") -> Splits:
    """One fold of TFD: train = ``train_set`` (the released yamls: ``unlabeled``); valid and test of that fold."""
    if not (isinstance(fold, int) and 0 <= fold < N_FOLDS):
        raise UserError(f"dataset.fold={fold}; allowed: 0..{N_FOLDS - 1}")
    if train_set not in SETS:
        raise UserError(f"dataset.train_set={train_set!r}; allowed: {', '.join(SETS)}")
    path = tfd_path(root)
    images, folds = read_tfd(path)

    def part(which: str) -> torch.Tensor:
        chosen = np.isin(folds[:, fold], SETS[which])
        if not chosen.any():
            raise UserError(f"TFD file {path} has no {which} images in fold {fold}")
        flat = images[chosen].reshape(int(chosen.sum()), SIDE * SIDE).astype(np.float32)
        return torch.from_numpy(flat).div_(255.0)

    return Splits(part(train_set), part("valid"), part("test"), (1, SIDE, SIDE))


class TFDData(ImageDataModule):
    """TFD (``conf/dataset/tfd.yaml``): one of the 5 folds; n_train / n_valid are not used (the folds decide).

    No class labels (``labels`` is None): the unlabeled set it trains on has none, so TFD has no domain classifier.
    """

    def __init__(self, *args, fold: int = 0, train_set: str = "unlabeled", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fold, self.train_set = fold, train_set

    def read(self) -> Splits:
        return load_tfd(self.root, self.fold, self.train_set)

    def record(self) -> dict[str, Any]:
        """The fold as well: the paper's Table 1 averages the 5 folds."""
        return {**super().record(), "fold": self.fold}
