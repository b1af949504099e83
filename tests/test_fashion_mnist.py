"""Fashion-MNIST: the real files through the real loader, and a real training run of a few updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advnets.data import FashionMNISTData, load_fashion_mnist, load_mnist

from conftest import data_dir_holding, run_advnets


@pytest.fixture
def data_dir() -> str:
    """The folder holding FashionMNIST/raw."""
    return data_dir_holding("FashionMNIST")


def test_fashion_mnist_has_mnists_splits_and_its_own_images(data_dir: str) -> None:
    from torchvision.datasets import FashionMNIST

    splits = load_fashion_mnist(data_dir, 50000, 10000, download=False)
    assert splits.train.shape == (50000, 784) and splits.valid.shape == (10000, 784)
    assert splits.test.shape == (10000, 784) and splits.image_shape == (1, 28, 28)
    assert float(splits.train.min()) == 0.0 and float(splits.train.max()) == 1.0
    raw = FashionMNIST(data_dir, train=True, download=False).data
    assert torch.equal(splits.valid[0], raw[50000].flatten().float() / 255)
    labels = FashionMNISTData("fashion_mnist", 100, 50000, 10000, root=data_dir, download=False).labels()
    assert torch.equal(labels.train, FashionMNIST(data_dir, train=True, download=False).targets[:50000])
    assert torch.equal(labels.test, FashionMNIST(data_dir, train=False, download=False).targets)
    mnist = load_mnist(data_dir, 10, 0, download=False)
    assert not torch.equal(splits.train[:10], mnist.train)  # really another dataset


def test_paper_fashion_mnist_trains_a_few_updates_and_evaluates(data_dir: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_advnets(
        "train",
        "experiment=paper_fashion_mnist",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "logger=csv",
        "callbacks.parzen_monitor.every_n_epochs=1",
        "callbacks.parzen_monitor.n_samples=200",
        "callbacks.progress_bar=null",
        "eval.n_samples=200",
        "threads=1",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "fashion_mnist" and results["n_test"] == 10000 and results["n_samples"] == 200
    from advnets.metrics.figures import main as draw_figures
    from advnets.metrics.figures import run_datamodule

    datamodule = run_datamodule(run, results, [])  # the figures' real images: the run's own dataset's
    fashion = load_fashion_mnist(data_dir, 200, 0, download=False).train
    assert datamodule.name == "fashion_mnist" and torch.equal(datamodule.reference_images(200), fashion)
    assert torch.equal(datamodule.load().test, load_fashion_mnist(data_dir, 1, 0, download=False).test)
    draw_figures([str(run)])
    assert (run / "beyond_parzen.png").stat().st_size > 10_000
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 * 4  # four joint updates (two optimizer steps each)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.1 / 1.000004**4)
