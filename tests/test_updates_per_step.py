"""game.updates_per_step: K updates per Lightning step give the same numbers as K = 1, also across a resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from advnets.training import build

from conftest import compose_cfg, quiet_trainer

RULES = {"joint": [], "alternating k=3": ["game.update=alternating", "game.k=3"]}


def train(tmp_path: Path, overrides: list[str], epochs: int, ckpt: Path | None = None, log: bool = False):
    """A quickstart game (8x8 digits: 12 batches per epoch) trained in this process on the CPU."""
    cfg = compose_cfg(["experiment=quickstart", "optimizer=paper_sgd", "logger=none", *overrides], tmp_path)
    pl.seed_everything(cfg.seed, verbose=False)  # as advnets-train does: the same initial nets
    datamodule, game, _ = build(cfg)
    trainer = quiet_trainer(
        max_epochs=epochs,
        logger=pl.loggers.CSVLogger(tmp_path, name="log", version=0) if log else False,
        log_every_n_steps=5,
        default_root_dir=tmp_path,
    )
    trainer.fit(game, datamodule=datamodule, ckpt_path=ckpt)
    return game, trainer


def logged_steps(tmp_path: Path) -> dict[int, dict[str, str]]:
    with (tmp_path / "log" / "version_0" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/d_loss")]
    return {int(r["step"]): {k: v for k, v in r.items() if k.startswith("train/") and v} for r in rows}


def assert_same_state(a: pl.LightningModule, b: pl.LightningModule) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("rule", RULES)
def test_k7_equals_k1_bit_for_bit_also_across_a_resume(tmp_path: Path, rule: str) -> None:
    extra = RULES[rule]
    one, one_trainer = train(tmp_path / "k1", [*extra, "game.updates_per_step=1"], epochs=2, log=True)
    seven, seven_trainer = train(tmp_path / "k7", [*extra, "game.updates_per_step=7"], epochs=2, log=True)
    assert one.updates == seven.updates == 24  # 12 batches per epoch: groups of 7 and 5 with K = 7
    assert one_trainer.global_step == seven_trainer.global_step  # optimizer steps, as K = 1 counts them
    assert_same_state(one, seven)
    for opt_1, opt_7 in zip(one.optimizers(), seven.optimizers(), strict=True):
        assert opt_1.param_groups[0]["lr"] == opt_7.param_groups[0]["lr"]
    # the same step metrics at the same steps: every 5th update, not every 5th Lightning step
    logged_1, logged_7 = logged_steps(tmp_path / "k1"), logged_steps(tmp_path / "k7")
    assert sorted(logged_7) == [4, 9, 14, 19] and logged_1 == logged_7

    # stop after epoch 1 with K = 7, resume to epoch 2 with K = 7: the same parameters again
    first, first_trainer = train(tmp_path / "first", [*extra, "game.updates_per_step=7"], epochs=1)
    ckpt = tmp_path / "epoch1.ckpt"
    first_trainer.save_checkpoint(ckpt)
    resumed, resumed_trainer = train(tmp_path / "resumed", [*extra, "game.updates_per_step=7"], epochs=2, ckpt=ckpt)
    assert resumed.updates == 24 and resumed_trainer.global_step == one_trainer.global_step
    assert_same_state(one, resumed)
    assert not torch.equal(first.generator.out.weight, resumed.generator.out.weight)  # epoch 2 did train


def test_bad_updates_per_step_is_refused_by_name(tmp_path: Path) -> None:
    from advnets.errors import find_user_error
    from advnets.training import check_config

    for value, message in (("0", "game.updates_per_step=0"), ("fast", "game.compile='fast'")):
        key = "game.compile" if value == "fast" else "game.updates_per_step"
        cfg = compose_cfg(["experiment=quickstart", "logger=none", f"{key}={value}"], tmp_path)
        with pytest.raises(Exception) as info:  # the schema (the choices of the game's Literal), then the game
            check_config(cfg)
            build(cfg)
        error = str(find_user_error(info.value))
        assert message in error and "allowed" in error
