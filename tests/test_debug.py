"""The ``debug=`` group: short runs that check the pipeline (fast, limit, overfit, profiler)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import QUICK, compose_cfg, run_advnets


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_tests_quick_run_is_debug_limit_on_the_quickstart() -> None:
    """QUICK is the quickstart cut to 4 epochs (each whole: 12 batches), monitors every 2, 300 samples."""
    spelt_out = [
        "experiment=quickstart",
        "trainer.max_epochs=4",
        "+trainer.limit_train_batches=12",
        "callbacks.parzen_monitor.every_n_epochs=2",
        "callbacks.sample_grid.every_n_epochs=2",
        "callbacks.progress_bar=null",
        "eval.n_samples=300",
        "threads=1",
    ]
    assert compose_cfg(QUICK) == compose_cfg(spelt_out)


def test_debug_fast_runs_every_stage_once_on_three_batches(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _ok(run_advnets("train", "debug=fast", "threads=1", f"hydra.run.dir={run}"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run/epochs"] == 1 and metrics["run/global_step"] == 3 * 2  # the joint update: 2 steps a batch
    assert (run / "val_curve.csv").read_text().splitlines()[1].startswith("1,")
    assert [p.name for p in (run / "samples").iterdir()] == ["epoch_0001.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    results = json.loads((run / "results.json").read_text())
    assert results["n_samples"] == 300 and results["checkpoint"].endswith("best.ckpt")
    assert not (run / "wandb").exists()  # no logger


def test_debug_profiler_writes_the_epochs_profile_into_the_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _ok(run_advnets("train", "debug=profiler", "logger=none", "threads=1", f"hydra.run.dir={run}"))
    profile = (run / "fit-profile.txt").read_text()
    assert "run_training_batch" in profile and "[Callback]SampleGrid.on_train_epoch_end" in profile
    assert json.loads((run / "metrics.json").read_text())["run/epochs"] == 1
    assert not (run / "results.json").exists()  # only training is profiled


def test_debug_overfit_trains_on_the_same_single_batch_every_epoch() -> None:
    cfg = compose_cfg(["debug=overfit"])
    assert cfg.dataset.n_train == cfg.dataset.batch_size
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epochs = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        epochs.append([sorted(batch.tolist()) for batch in loader.sampler])
    assert epochs[0] == [list(range(cfg.dataset.batch_size))] and epochs[0] == epochs[1] == epochs[2]


@pytest.mark.parametrize("option", ["fast", "limit", "overfit", "profiler"])
def test_every_debug_option_composes_with_the_papers_experiments_too(option: str) -> None:
    from advnets.schema import TRAIN, validate

    validate(compose_cfg(["experiment=paper_mnist", f"debug={option}"]), TRAIN)
