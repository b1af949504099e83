"""Data: the paper's splits and value range, in memory; shuffled index batches, sharded per DDP rank."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from advnets.data import DigitsData, MNISTData, ShuffledIndexBatches, load_digits, load_mnist
from advnets.training import build

from conftest import QUICK, REPO, cli_env, compose_cfg


def test_mnist_has_the_papers_splits_and_raw_pixels(mnist_dir: str) -> None:
    splits = load_mnist(mnist_dir, 50000, 10000, download=False)
    assert splits.train.shape == (50000, 784) and splits.valid.shape == (10000, 784)
    assert splits.test.shape == (10000, 784) and splits.image_shape == (1, 28, 28)
    for part in (splits.train, splits.valid, splits.test):
        assert part.dtype == torch.float32 and float(part.min()) == 0.0 and float(part.max()) == 1.0
    # raw/255, not binarised: many grey levels
    assert len(torch.unique(splits.train[:100])) > 200
    from torchvision.datasets import MNIST

    raw = MNIST(mnist_dir, train=True, download=False).data
    assert torch.equal(splits.valid[0], raw[50000].flatten().float() / 255)  # valid starts at image 50000
    labels = MNISTData("mnist", 100, 50000, 10000, root=mnist_dir, download=False).labels()  # its own labels
    targets = MNIST(mnist_dir, train=True, download=False).targets
    assert labels.valid[0] == targets[50000] and len(labels.valid) == 10000 and len(labels.test) == 10000
    assert torch.equal(labels.test, MNIST(mnist_dir, train=False, download=False).targets)


def test_digits_split_and_range() -> None:
    splits = load_digits(1200, 300)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (1200, 300, 297)
    assert float(splits.train.min()) == 0.0 and float(splits.train.max()) == 1.0


def test_batches_are_a_fresh_permutation_each_epoch_and_reproducible() -> None:
    sampler = ShuffledIndexBatches(1000, 100, seed=1)
    epoch0 = torch.cat(list(sampler))
    assert sorted(epoch0.tolist()) == list(range(1000))
    assert torch.equal(epoch0, torch.cat(list(sampler)))  # same epoch, same order (resume replays it)
    sampler.set_epoch(1)
    assert not torch.equal(epoch0, torch.cat(list(sampler)))


def test_ranks_get_disjoint_shares_of_the_same_permutation() -> None:
    ranks = [ShuffledIndexBatches(1000, 100, seed=1, rank=r, world=2) for r in (0, 1)]
    shares = [torch.cat(list(s)) for s in ranks]
    assert len(ranks[0]) == 5 and set(shares[0].tolist()).isdisjoint(shares[1].tolist())
    assert sorted(torch.cat(shares).tolist()) == list(range(1000))


def test_data_module_serves_in_memory_batches() -> None:
    dm = DigitsData("digits", 100, 1200, 300, seed=0)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 12 and all(b.shape == (100, 64) for b in batches)
    seen = torch.cat(batches)
    assert len(torch.unique(seen, dim=0)) == len(torch.unique(dm.load().train, dim=0))


def test_only_rank_zero_reads_the_data_before_the_trainer(tmp_path: Path, monkeypatch) -> None:
    """build() before any process group: another rank must not read (and so download) the data there."""
    cfg = compose_cfg(["experiment=quickstart", "logger=none"], tmp_path)

    def no_reading(self):
        raise AssertionError("rank 1 read the data in build()")

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    monkeypatch.setattr(DigitsData, "read", no_reading)
    build(cfg)  # no read: rank 0's output bias reaches this rank when DDP wraps G


def test_two_ranks_started_at_once_download_once(tmp_path: Path) -> None:
    """Two gloo ranks started together (as torchrun or SLURM start them), each running the whole CLI: the data
    is downloaded by one process, and the others find it after the barrier."""
    data, run_dir = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        *QUICK,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "evaluate=false",
        "logger=none",
        "dataset._target_=probes.SlowDownload",
        f"dataset.root={data}",
        f"hydra.run.dir={run_dir}",
    ]
    world = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "advnets.cli.train", *args],
            cwd=REPO,
            env=cli_env(**world, MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    downloads = sorted(f.read_text() for f in data.glob("downloaded_by_*"))
    assert downloads == ["0"], downloads
