"""game.compile: the torch.compile'd update follows the eager one (same random stream) on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from advnets.training import build

from conftest import compose_cfg, quiet_trainer


def flat(game: pl.LightningModule) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in game.parameters()])


def fifty_updates(tmp_path: Path, compile_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters before and after 50 updates (5 Lightning steps of 10)."""
    cfg = compose_cfg(
        [
            "experiment=quickstart",
            "optimizer=paper_sgd",
            "optimizer.lr=0.1",  # the paper's lr: the nets move visibly in 50 updates
            "logger=none",
            f"game.compile={compile_mode}",
            "game.updates_per_step=10",
        ],
        tmp_path,
    )
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, game, _ = build(cfg)
    trainer = quiet_trainer(
        max_epochs=5,
        limit_train_batches=1,  # one group of 10 updates per epoch
        default_root_dir=tmp_path,
    )
    start = flat(game).clone()
    trainer.fit(game, datamodule=datamodule)
    assert game.updates == 50
    return start, flat(game)


def test_compiled_update_agrees_with_eager_after_50_updates(tmp_path: Path, monkeypatch) -> None:
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "compile_threads", 1)  # no worker pool: faster on 2 cores
    start, eager = fifty_updates(tmp_path / "eager", "none")
    _, compiled = fifty_updates(tmp_path / "compiled", "default")
    assert float((eager - start).norm()) > 1e-3  # the nets did move
    relative = float((compiled - eager).norm() / eager.norm())
    assert relative < 1e-5, relative
    worst = float(((compiled - eager).abs() / eager.abs().clamp_min(1e-3)).max())
    assert worst < 1e-4, worst
