"""Every run is scored: a run shorter than the validation monitor's interval (or stopped by max_steps) is scored
at its last epoch, and only non-finite samples count as a diverged run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import QUICK, assert_user_error, run_advnets

SHORT = [*QUICK, "callbacks.parzen_monitor.every_n_epochs=5", "logger=none", "eval.metrics=[]"]
"""The quickstart with the default monitor interval of 5 epochs."""


@pytest.mark.parametrize(
    "limit", [["trainer.max_epochs=3"], ["trainer.max_epochs=10", "+trainer.max_steps=60"]], ids=["epochs", "steps"]
)
def test_a_run_shorter_than_the_monitor_interval_is_scored_at_its_last_epoch(tmp_path: Path, limit: list[str]) -> None:
    """max_steps=60: 24 optimizer steps an epoch (12 updates of G and D), so the fit stops inside epoch 3."""
    run_dir = tmp_path / "run"
    proc = run_advnets("train", *SHORT, *limit, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = run_dir / "checkpoints" / "best.ckpt"
    assert torch.load(best, map_location="cpu", weights_only=True)["epoch"] == 2  # the third epoch, 0-based
    rows = [line.split(",") for line in (run_dir / "val_curve.csv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ["3"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoint"] == str(best) and results["epoch"] == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objective_score"] == pytest.approx(float(rows[0][2]), abs=1e-4)
    assert metrics["objective_score"] > -1e5 and "diverged_at_epoch" not in metrics
    assert "evaluation skipped" not in proc.stdout + proc.stderr


def test_a_mistake_found_by_the_evaluation_is_said_not_taken_for_divergence(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    too_few = ["eval.n_samples=3", "eval.metrics=[precision]"]  # precision's k-NN needs more than k=3 samples
    proc = run_advnets("train", *SHORT, "trainer.max_epochs=1", *too_few, f"hydra.run.dir={run_dir}")
    assert_user_error(proc, "k-NN metrics need more than k=3 points per set; got 3")
    assert "diverged" not in proc.stdout + proc.stderr and "evaluation skipped" not in proc.stdout + proc.stderr
    assert not (run_dir / "metrics.json").exists()  # no score recorded for a run that was never evaluated
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()  # the trained run stays, to evaluate again
