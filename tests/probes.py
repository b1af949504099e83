"""Test-only callbacks, added to real CLI runs with ``+callbacks.NAME._target_=probes.X`` (PYTHONPATH=tests)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from advnets.data import DigitsData
from advnets.data.base import Splits


class ParamDigest(pl.Callback):
    """At the end of training, every rank writes its world size, its SLURM node (if any) and a digest of all
    parameters."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        flat = torch.cat([p.detach().double().flatten() for p in pl_module.parameters()])
        record = {
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "node": os.environ.get("SLURMD_NODENAME"),
            "sum": float(flat.sum()),
            "abs_sum": float(flat.abs().sum()),
            "first": flat[:5].tolist(),
            "global_step": trainer.global_step,
        }
        out = Path(trainer.default_root_dir) / f"params_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(record))


class FailsAtEpoch(pl.Callback):
    """A bug in one's own code: raises at the end of epoch ``at`` (1-based) until the file ``fixed`` exists."""

    def __init__(self, at: int, fixed: str) -> None:
        self.at, self.fixed = at, Path(fixed)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.at and not self.fixed.exists():
            raise RuntimeError("a bug in the user's callback")


class ConvGenerator(torch.nn.Module):
    """A stand-in for a new model class: the schema must check its keys by its signature alone."""

    def __init__(self, noise_dim: int, channels: list[int], data_dim: int = 64) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.data_dim = noise_dim, channels, data_dim


class NanOnOneRank(pl.Callback):
    """Rank 1 only: its last batch of epoch 1 becomes NaN (rank 0's losses stay finite that epoch). At the end
    every rank writes when it stopped and whether it saw the divergence."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == trainer.num_training_batches - 1:
            batch.fill_(float("nan"))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "diverged_at": pl_module.diverged_at,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "finite_here": bool(pl_module.losses_finite),
        }
        out = Path(trainer.default_root_dir) / f"stop_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(record))


class SlowDownload(DigitsData):
    """The digits behind a pretend download into ``root`` (as torchvision's ``download=True`` does it): a process
    that finds no ``digits.done`` there transfers for a second, writes it, and leaves a ``downloaded_by_<pid>``."""

    def fetch(self) -> None:
        self._download()

    def read(self) -> Splits:
        self._download()
        return super().read()

    def _download(self) -> None:
        root = Path(str(self.root))
        if (root / "digits.done").exists():
            return
        (root / f"downloaded_by_{os.getpid()}").write_text(os.environ.get("RANK", "-"))
        time.sleep(1.0)
        (root / "digits.done").write_text("ok")


class DrawRecorder(pl.Callback):
    """Every rank saves the noise z its G and the dropout masks its D received in the first update of the fit, to
    ``draws_rank<rank>.pt`` in the run folder."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen: dict[str, object] = {}

        def take_z(module, args) -> None:
            self.seen.setdefault("z", args[0].detach().cpu().clone())

        def take_masks(module, args, kwargs) -> None:
            masks = args[1] if len(args) > 1 else kwargs.get("masks")
            self.seen.setdefault("masks", [None if m is None else m.detach().cpu().clone() for m in masks])

        self.hooks = [
            pl_module.generator.register_forward_pre_hook(take_z),
            pl_module.discriminator.register_forward_pre_hook(take_masks, with_kwargs=True),
        ]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self.hooks:
            hook.remove()
        Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        torch.save(self.seen, Path(trainer.default_root_dir) / f"draws_rank{trainer.global_rank}.pt")
