"""DDP-safe stopping and a truthful ddp_spawn record, with real 2-process gloo DDP through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import QUICK, run_cli
from wandb_log import history, read_records


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = run_cli(
        "train",
        *QUICK,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=3",
        "evaluate=false",
        "logger=none",
        "+callbacks.nan._target_=probes.NanOnOneRank",
        f"hydra.run.dir={run_dir}",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run_dir / f"stop_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["finite_here"] for r in ranks] == [True, False]  # only rank 1 saw the NaN
    assert [r["diverged_at"] for r in ranks] == [1, 1]  # yet both stopped after epoch 1
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 6 * 2
    assert (proc.stdout + proc.stderr).count("advnets: training diverged in epoch 1") == 1
    assert json.loads((run_dir / "metrics.json").read_text())["diverged_at_epoch"] == 1


def test_ddp_spawn_hands_back_epochs_divergence_and_step(tmp_path: Path) -> None:
    common = [*QUICK, "trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2"]
    run_dir = tmp_path / "spawn"
    proc = run_cli("train", *common, "eval.checkpoint=last", f"hydra.run.dir={run_dir}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoint"].endswith("last.ckpt") and results["epochs_trained"] == results["epoch"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run/epochs"] == 2 and metrics["run/global_step"] == 2 * 6 * 2
    logs = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    rows = [row for log in logs for row in history(read_records(log))]
    test_rows = [row for row in rows if "test/parzen_ll" in row]
    assert len(test_rows) == 1 and test_rows[0]["trainer/global_step"] == 2 * 6 - 1  # the last update's index
    assert max(row.get("trainer/global_step", 0) for row in rows) == 2 * 6 - 1

    diverged = tmp_path / "spawn_nan"
    proc = run_cli(
        "train", *common, "logger=none", "+callbacks.nan._target_=probes.NanOnOneRank", f"hydra.run.dir={diverged}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((diverged / "metrics.json").read_text())
    assert metrics["diverged_at_epoch"] == 1 and metrics["run/epochs"] == 1 and metrics["val/parzen_ll"] == -1.0e6
    assert not (diverged / "results.json").exists()
