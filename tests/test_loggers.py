"""logger=tensorboard and logger=mlflow: what each wrote, read back with its own reader; one run per job."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import run_cli

LOSSES = {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"}
TESTS = {"test/parzen_ll", "test/fid", "test_real_vs_real/fid"}


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr.lower(), proc.stderr[-3000:]  # nothing but the run


def test_tensorboard_event_files_hold_losses_validation_and_test_values(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _ok(run_cli("train", "debug=fast", "logger=tensorboard", "threads=1", f"hydra.run.dir={run}"))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert LOSSES | TESTS | {"val/parzen_ll"} <= scalars, sorted(scalars)
    assert [e.step for e in events.Scalars("train/d_loss")] == [0, 1, 2]  # every update of the 3 (log_every_n_steps=1)
    results = json.loads((run / "results.json").read_text())
    (test,) = events.Scalars("test/parzen_ll")
    assert abs(test.value - results["parzen_ll"]) < 1e-4 and test.step == 2  # at the last update
    (val,) = events.Scalars("val/parzen_ll")
    curve = (run / "val_curve.csv").read_text().splitlines()[1].split(",")  # epoch, step, val_parzen_ll, sigma
    assert abs(val.value - float(curve[2])) < 1e-4 and val.step == 2


def test_mlflow_store_in_the_run_folder_holds_one_run_across_a_resume(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    common = ["debug=fast", "logger=mlflow", "threads=1", f"hydra.run.dir={run}"]
    _ok(run_cli("train", *common, "evaluate=false", cwd=tmp_path))
    _ok(run_cli("train", *common, "trainer.max_epochs=2", "allow_config_change=true", cwd=tmp_path))
    assert not (tmp_path / "mlruns").exists()  # nothing outside the run folder
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "advnets"]
    (found,) = client.search_runs([experiment.experiment_id])  # the resumed job went on in the same run
    assert found.info.run_id == (run / "mlflow_id.txt").read_text().strip()
    assert found.info.run_name == "quickstart" and found.info.status == "FINISHED"
    assert LOSSES | TESTS | {"val/parzen_ll"} <= set(found.data.metrics), sorted(found.data.metrics)
    val = client.get_metric_history(found.info.run_id, "val/parzen_ll")
    assert sorted(m.step for m in val) == [2, 5]  # epochs 1 and 2 (3 updates each), each at its last update
    results = json.loads((run / "results.json").read_text())
    assert abs(found.data.metrics["test/parzen_ll"] - results["parzen_ll"]) < 1e-6
    assert found.data.params["dataset/name"] == "digits"  # the composed config, as parameters
