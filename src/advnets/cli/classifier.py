"""``advnets-classifier dataset=mnist``: train the dataset's domain classifier (Lightning) and commit its weights
and card into the package (``advnets/metrics/classifiers/``), where evaluation finds them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from advnets import CONF_DIR
from advnets.cli.entry import cli
from advnets.errors import UserError
from advnets.logs import get_logger
from advnets.metrics.features import CLASSIFIER_DIR, ClassifierCard, LeNet, md5_of

MAX_WEIGHTS_BYTES = 2 * 2**20  # committed into the package: keep each file small
log = get_logger(__name__)


def _mnist_like_labels(cls_name: str, root: str | None) -> tuple[Tensor, Tensor]:
    import torchvision.datasets as tvd

    from advnets.data import resolve_root

    folder = str(resolve_root(root))
    cls = getattr(tvd, cls_name)
    return cls(folder, train=True, download=False).targets, cls(folder, train=False, download=False).targets


def _digits_labels(root: str | None) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    labels = torch.from_numpy(load_digits().target).long()
    return labels, labels


LABELS = {  # dataset name -> (train-file labels, test-file labels), in the order the data module slices its splits
    "mnist": lambda root: _mnist_like_labels("MNIST", root),
    "fashion_mnist": lambda root: _mnist_like_labels("FashionMNIST", root),
    "digits": _digits_labels,
}


def labelled_splits(datamodule) -> dict[str, tuple[Tensor, Tensor]]:
    """(images, labels) for train / valid / test of the data module (the same slices it trains GANs on)."""
    if datamodule.name not in LABELS:
        raise UserError(f"dataset.name={datamodule.name!r} has no labels here; allowed: {', '.join(LABELS)}")
    splits = datamodule.load()
    train_labels, test_labels = LABELS[datamodule.name](datamodule.root)
    n_train, n_valid = len(splits.train), len(splits.valid)
    if datamodule.name == "digits":  # one pool: test is what follows train + valid
        test_labels = train_labels[n_train + n_valid :]
    return {
        "train": (splits.train, train_labels[:n_train]),
        "valid": (splits.valid, train_labels[n_train : n_train + n_valid]),
        "test": (splits.test, test_labels),
    }


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of the LeNet with Adam; logs val/acc each epoch."""

    def __init__(self, net: LeNet, lr: float) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/acc", (self.net(x).argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


@torch.no_grad()
def accuracy(net: LeNet, images: Tensor, labels: Tensor, batch: int = 2000) -> float:
    """Top-1 accuracy of ``net`` (eval mode)."""
    net.eval()
    hits = sum(
        int((net(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum()) for i in range(0, len(images), batch)
    )
    return hits / len(images)


def train_classifier(cfg: DictConfig) -> ClassifierCard:
    """Train, test, and write ``<dataset>.pt`` + ``<dataset>.json`` into ``cfg.out_dir``."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.dataset)
    data = labelled_splits(datamodule)
    image_shape = datamodule.load().image_shape
    net = LeNet(
        image_shape,
        int(cfg.classifier.n_classes),
        tuple(cfg.classifier.channels),
        int(cfg.classifier.feature_dim),
        float(cfg.classifier.dropout),
    )
    g = torch.Generator().manual_seed(int(cfg.seed))
    train_loader = DataLoader(
        TensorDataset(*data["train"]), batch_size=int(cfg.classifier.batch_size), shuffle=True, generator=g
    )
    valid_loader = DataLoader(TensorDataset(*data["valid"]), batch_size=2000)
    trainer = instantiate(cfg.trainer)
    trainer.fit(ClassifierModule(net, float(cfg.classifier.lr)), train_loader, valid_loader)
    test_acc = accuracy(net, *data["test"])
    log.info("%s: test accuracy %.4f on %d images", datamodule.name, test_acc, len(data["test"][1]))
    if test_acc < float(cfg.classifier.min_accuracy):
        raise UserError(
            f"test accuracy {test_acc:.4f} < classifier.min_accuracy={cfg.classifier.min_accuracy}; nothing written"
        )
    return write_classifier(net.eval(), datamodule.name, cfg, test_acc, len(data["test"][1]), len(data["train"][1]))


def write_classifier(
    net: LeNet, dataset: str, cfg: DictConfig, test_acc: float, n_test: int, n_train: int
) -> ClassifierCard:
    out = Path(cfg.out_dir) if cfg.get("out_dir") else CLASSIFIER_DIR
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{dataset}.pt"
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    os.close(fd)
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp)
    if Path(tmp).stat().st_size > MAX_WEIGHTS_BYTES:
        Path(tmp).unlink()
        raise UserError(
            f"classifier weights exceed {MAX_WEIGHTS_BYTES} bytes; choose smaller classifier.channels/feature_dim"
        )
    os.chmod(tmp, 0o644)  # mkstemp makes it private; it is package data
    os.replace(tmp, weights)
    card = ClassifierCard(
        dataset=dataset,
        image_shape=tuple(net.image_shape),
        n_classes=int(cfg.classifier.n_classes),
        channels=tuple(cfg.classifier.channels),
        feature_dim=int(cfg.classifier.feature_dim),
        test_accuracy=round(test_acc, 6),
        n_test=n_test,
        n_train=n_train,
        epochs=int(cfg.trainer.max_epochs),
        seed=int(cfg.seed),
        md5=md5_of(weights),
        weights=weights.name,
        training={k: cfg.classifier[k] for k in ("lr", "batch_size", "dropout")},
    )
    card.write(out / f"{dataset}.json")
    log.info("wrote %s and %s", weights, out / f"{dataset}.json")
    return card


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="classifier")
def hydra_main(cfg: DictConfig) -> float:
    return train_classifier(cfg).test_accuracy


main = cli(hydra_main)


if __name__ == "__main__":
    main()
