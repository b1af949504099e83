"""``advnets-classifier dataset=NAME``: train a dataset's domain classifier (Lightning) on the labels its data module
gives (``ImageDataModule.labels``) and write its weights and card into the user cache's ``classifiers/`` (or
``out_dir``), where evaluation finds them after the package's own (``advnets/metrics/classifiers/``)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict
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
from advnets.data import ImageDataModule, Labels
from advnets.errors import UserError
from advnets.logs import get_logger, quiet_third_party
from advnets.metrics import cache
from advnets.metrics.features import CLASSIFIER_DIR, ClassifierCard, LeNet, md5_of
from advnets.store import atomic

MAX_WEIGHTS_BYTES = 2 * 2**20  # the package ships some: keep each file small
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
log = get_logger(__name__)


def labelled_splits(datamodule: ImageDataModule) -> dict[str, tuple[Tensor, Tensor]]:
    """(images, labels) for train / valid / test of the data module (the same slices it trains GANs on); the labels
    are the data module's own (``labels``)."""
    labels = datamodule.labels()
    if labels is None:
        raise UserError(
            f"dataset={datamodule.name!r} ({type(datamodule).__qualname__}) has no class labels; allowed: a dataset "
            "whose data module's labels() returns them (a domain classifier learns its classes)"
        )
    splits = datamodule.load()
    pairs = {
        "train": (splits.train, labels.train),
        "valid": (splits.valid, labels.valid),
        "test": (splits.test, labels.test),
    }
    for part, (images, classes) in pairs.items():
        if len(images) != len(classes) or classes.dtype != torch.int64 or (len(classes) and int(classes.min()) < 0):
            raise UserError(
                f"dataset={datamodule.name!r}: {part} labels {classes.dtype} [{len(classes)}] for {len(images)} "
                f"{part} images; allowed: labels() giving one int64 class >= 0 per image of load()'s splits"
            )
    return pairs


def check_name(name: str) -> str:
    """The dataset's name as a file name for its classifier: letters, digits, ``_``, ``-`` and ``.``."""
    if not SAFE_NAME.fullmatch(name):
        raise UserError(f"dataset.name={name!r} cannot name a classifier file; allowed: letters, digits, _ - .")
    return name


def out_folder(cfg: DictConfig, dataset: str) -> Path:
    """``out_dir``, or the user cache's classifier folder (where evaluation looks after the package's own)."""
    if cfg.get("out_dir"):
        return Path(cfg.out_dir)
    folder = cache.classifier_dir()
    if folder is None:
        raise UserError("ADVNETS_CACHE_DIR=off leaves no classifier folder; allowed: a folder there, or out_dir=DIR")
    if (CLASSIFIER_DIR / f"{dataset}.json").is_file():
        log.warning(
            "advnets ships a classifier for %s: evaluation uses that one, not the one written to %s", dataset, folder
        )
    return folder


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
    quiet_third_party()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: ImageDataModule = instantiate(cfg.dataset)
    name = check_name(datamodule.name)
    out = out_folder(cfg, name)  # before any work: a missing place to write is said first
    data = labelled_splits(datamodule)
    n_classes = Labels(*(labels for _, labels in data.values())).n_classes
    if cfg.classifier.n_classes is not None:
        if n_classes > int(cfg.classifier.n_classes):
            raise UserError(
                f"classifier.n_classes={cfg.classifier.n_classes} but {name}'s labels go up to {n_classes - 1}; "
                f"allowed: >= {n_classes}, or null (from the labels)"
            )
        n_classes = int(cfg.classifier.n_classes)
    net = LeNet(
        datamodule.image_shape,
        n_classes,
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
    log.info("%s: test accuracy %.4f on %d images", name, test_acc, len(data["test"][1]))
    if test_acc < float(cfg.classifier.min_accuracy):
        raise UserError(
            f"test accuracy {test_acc:.4f} < classifier.min_accuracy={cfg.classifier.min_accuracy}; nothing written"
        )
    return write_classifier(net.eval(), name, out, cfg, test_acc, len(data["test"][1]), len(data["train"][1]))


def write_classifier(
    net: LeNet, dataset: str, out: Path, cfg: DictConfig, test_acc: float, n_test: int, n_train: int
) -> ClassifierCard:
    """``<dataset>.pt`` and its card ``<dataset>.json`` into ``out``, the weights first (each written whole)."""
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
    os.chmod(tmp, 0o644)  # mkstemp makes it private; it may be package data
    os.replace(tmp, weights)
    card = ClassifierCard(
        dataset=dataset,
        image_shape=tuple(net.image_shape),
        n_classes=int(net.head[-1].out_features),
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
    atomic.write_text(out / f"{dataset}.json", json.dumps(asdict(card), indent=2) + "\n")
    log.info("wrote %s and %s", weights, out / f"{dataset}.json")
    return card


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="classifier")
def hydra_main(cfg: DictConfig) -> float:
    return train_classifier(cfg).test_accuracy


main = cli(hydra_main)


if __name__ == "__main__":
    main()
