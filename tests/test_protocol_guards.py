"""The protocol's guards, each on data built so that breaking it changes the answer: sigma is chosen on validation
(never test) by the evaluation, the training monitor scores validation (never test), and every DDP rank draws its
own noise and dropout masks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advnets.callbacks import ParzenMonitor
from advnets.data.base import Splits
from advnets.data.digits import DigitsData
from advnets.evaluation import EvalSettings, evaluate_run
from advnets.metrics.parzen import SIGMA_GRID, parzen_log_likelihood, select_sigma
from advnets.sampling import generate, noise_from_seed
from advnets.training import build

from conftest import compose_cfg, quiet_trainer
from probes import DrawRecorder


class GivenSplits(DigitsData):
    """The digits data module serving the splits it was given (``use``), not the digits'."""

    given: Splits | None = None

    def use(self, splits: Splits) -> GivenSplits:
        self.given = splits
        return self

    def read(self) -> Splits:
        assert self.given is not None
        return self.given


def quick_game(tmp_path: Path, *overrides: str):
    cfg = compose_cfg(["experiment=quickstart", "logger=none", *overrides], tmp_path)
    datamodule, game, _ = build(cfg)
    return cfg, datamodule, game


def test_the_evaluation_chooses_sigma_on_validation_never_test(tmp_path: Path) -> None:
    """Validation lies tight around G's samples (a small sigma wins), test far from them (the widest sigma wins):
    ``evaluate_run`` must report validation's sigma and the test LL at that sigma."""
    cfg, datamodule, game = quick_game(tmp_path)
    G = game.generator
    settings = EvalSettings(n_samples=300, n_valid=200, grid=SIGMA_GRID, sigma=None, seed=3, precision="float64")
    samples = generate(G, noise_from_seed(300, G.noise_dim, cfg.game.noise, 3))  # the draw evaluate_run makes
    digits = datamodule.load()
    g = torch.Generator().manual_seed(0)
    valid = samples[:200] + 0.01 * torch.randn(200, samples.shape[1], generator=g)
    test = torch.rand(150, samples.shape[1], generator=g)
    splits = Splits(digits.train, valid, test, digits.image_shape)
    sigma_valid, _ = select_sigma(valid, samples, SIGMA_GRID)
    sigma_test, _ = select_sigma(test, samples, SIGMA_GRID)
    assert sigma_valid < sigma_test  # the data can tell the two choices apart

    dm = GivenSplits(**{k: v for k, v in cfg.dataset.items() if k != "_target_"}).use(splits)
    results = evaluate_run(G, dm, cfg.game.noise, settings, tmp_path / "eval", {})
    assert results["sigma"] == sigma_valid, (results["sigma"], sigma_valid, sigma_test)
    expected = parzen_log_likelihood(test, samples, [sigma_valid])[0].mean().item()
    assert results["parzen_ll"] == pytest.approx(expected, abs=1e-6)
    assert results["n_valid"] == 200 and results["n_test"] == 150


def test_the_parzen_monitor_scores_validation_never_test(tmp_path: Path) -> None:
    """Test images inverted (1 - x) score far below validation under any G: the logged ``val/parzen_ll`` and
    ``val/parzen_sigma`` must be those of G's monitor samples against the first validation images."""
    cfg, datamodule, game = quick_game(tmp_path)
    digits = datamodule.load()
    splits = Splits(digits.train, digits.valid, 1.0 - digits.test, digits.image_shape)
    dm = GivenSplits(**{k: v for k, v in cfg.dataset.items() if k != "_target_"}).use(splits)
    monitor = ParzenMonitor(every_n_epochs=1, n_samples=500, n_valid=200)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[monitor], default_root_dir=tmp_path)
    trainer.fit(game, datamodule=dm)

    # the monitor's samples: its fixed draw (seed + 7) from G as the epoch left it
    z = noise_from_seed(500, game.generator.noise_dim, game.noise, game.seed + 7)
    samples = generate(game.generator, z)
    on_valid = select_sigma(splits.valid[:200], samples, SIGMA_GRID, precision="float32")
    on_test = select_sigma(splits.test[:200], samples, SIGMA_GRID, precision="float32")
    assert on_test[1].max() < on_valid[1].max() - 10  # the two splits give different scores

    logged = trainer.callback_metrics
    assert float(logged["val/parzen_ll"]) == pytest.approx(float(on_valid[1].max()), abs=1e-3)
    assert float(logged["val/parzen_sigma"]) == pytest.approx(on_valid[0], rel=1e-6)


def test_ddp_ranks_draw_their_own_noise_and_dropout_masks(tmp_path: Path) -> None:
    """Two gloo ranks (ddp_spawn) record the z and the dropout masks of their first update, as G and D received
    them: the ranks' draws differ (one shared draw would make the second rank's updates a copy of the first's)."""
    cfg, datamodule, game = quick_game(tmp_path, "seed=5")
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=1,
        strategy="ddp_spawn",
        devices=2,
        default_root_dir=tmp_path,
        callbacks=[DrawRecorder()],
    )
    trainer.fit(game, datamodule=datamodule)
    r0, r1 = (torch.load(tmp_path / f"draws_rank{r}.pt") for r in (0, 1))
    n = cfg.dataset.batch_size  # each rank's batch
    assert r0["z"].shape == r1["z"].shape == (n, cfg.model.noise_dim)
    assert not torch.equal(r0["z"], r1["z"]), "both ranks drew the same z"
    masks = [(a, b) for a, b in zip(r0["masks"], r1["masks"], strict=True) if a is not None]
    assert masks and all(a.shape == b.shape and a.shape[0] == 2 * n for a, b in masks)  # real and fake halves
    assert all(not torch.equal(a, b) for a, b in masks), "a dropout mask is the same on both ranks"
