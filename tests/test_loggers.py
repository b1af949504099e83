"""Every logger on par: logger=tensorboard, logger=mlflow and W&B (offline), each read back with its own reader:
the losses per update and their epoch means, the validation and test values, the sample grids and the
evaluation's pictures, the hyper-parameters; one run (one TensorBoard event file) per job; W&B quiet."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import QUICK, run_advnets, run_cli

LOSSES = {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"}
EPOCH_MEANS = {f"{name}_epoch" for name in LOSSES}
TESTS = {"test/parzen_ll", "test/fid", "test_real_vs_real/fid"}


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr.lower(), proc.stderr[-3000:]  # nothing but the run


def test_tensorboard_gets_losses_means_pictures_hparams_and_test_values_in_one_event_file(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run = tmp_path / "run"
    _ok(run_advnets("train", "debug=fast", "logger=tensorboard", "threads=1", f"hydra.run.dir={run}"))
    (event_file,) = (run / "tensorboard").glob("events.out.tfevents.*")  # one stream: test values included
    events = EventAccumulator(str(event_file), size_guidance={"images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert LOSSES | EPOCH_MEANS | TESTS | {"val/parzen_ll"} <= scalars, sorted(scalars)
    assert [e.step for e in events.Scalars("train/d_loss")] == [0, 1, 2]  # every update of the 3 (log_every_n_steps=1)
    results = json.loads((run / "results.json").read_text())
    (test,) = events.Scalars("test/parzen_ll")
    assert abs(test.value - results["parzen_ll"]) < 1e-4 and test.step == 2  # at the last update
    (val,) = events.Scalars("val/parzen_ll")
    curve = (run / "val_curve.csv").read_text().splitlines()[1].split(",")  # epoch, step, val_parzen_ll, sigma
    assert abs(val.value - float(curve[2])) < 1e-4 and val.step == int(curve[1]) == 2  # the csv's step: updates
    assert {"samples", "test/samples", "test/interpolation"} <= set(events.Tags()["images"])
    (grid,) = events.Images("samples")
    assert grid.step == 2 and grid.width > 0 and grid.height > 0  # epoch 1's grid, at its last update
    hparams = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["dataset/name"].string_value == "digits"
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/parzen_ll", "test/parzen_ll"}


def test_mlflow_store_in_the_run_folder_holds_one_run_across_a_resume(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    common = ["debug=fast", "logger=mlflow", "threads=1", f"hydra.run.dir={run}"]
    _ok(run_advnets("train", *common, "evaluate=false", cwd=tmp_path))
    _ok(run_advnets("train", *common, "trainer.max_epochs=2", "allow_config_change=true", cwd=tmp_path))
    assert not (tmp_path / "mlruns").exists()  # nothing outside the run folder
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "advnets"]
    (found,) = client.search_runs([experiment.experiment_id])  # the resumed job went on in the same run
    assert found.info.run_id == (run / "mlflow_id.txt").read_text().strip()
    assert found.info.run_name == "quickstart" and found.info.status == "FINISHED"
    assert LOSSES | EPOCH_MEANS | TESTS | {"val/parzen_ll"} <= set(found.data.metrics), sorted(found.data.metrics)
    val = client.get_metric_history(found.info.run_id, "val/parzen_ll")
    assert sorted(m.step for m in val) == [2, 5]  # epochs 1 and 2 (3 updates each), each at its last update
    results = json.loads((run / "results.json").read_text())
    assert abs(found.data.metrics["test/parzen_ll"] - results["parzen_ll"]) < 1e-6
    assert found.data.params["dataset/name"] == "digits"  # the composed config, as parameters
    artifacts = client.list_artifacts(found.info.run_id, "samples"), client.list_artifacts(found.info.run_id, "test")
    assert [a.path for a in artifacts[0]] == ["samples/epoch_0001.png", "samples/epoch_0002.png"]  # both starts
    assert [a.path for a in artifacts[1]] == ["test/interpolation.png", "test/samples_grid.png"]
    assert all(a.file_size > 0 for a in artifacts[0] + artifacts[1])


def test_wandb_is_quiet_and_gets_the_epoch_means_and_sample_grids(tmp_path: Path) -> None:
    """A real offline W&B run (logger=wandb, the default), read back from its .wandb file; W&B's own closing
    history and summary are not printed (even with WANDB_SILENT unset), and train.log holds no colour codes."""
    from wandb_log import history, offline_run_file, read_records

    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, f"hydra.run.dir={run}", WANDB_SILENT="false")
    _ok(proc)
    said = proc.stdout + proc.stderr
    assert "Run summary" not in said and "Run history" not in said, said[-3000:]
    assert f"advnets: run {run}" in proc.stdout  # the run's own closing lines still say what it scored
    log = (run / "train.log").read_text()
    assert "\x1b[" not in log
    rows = history(read_records(offline_run_file(run)))
    logged = {key for row in rows for key in row}
    assert EPOCH_MEANS <= logged, sorted(logged)
    grids = [row for row in rows if "samples/_type" in row]
    assert [(row["samples/_type"], row["samples/count"]) for row in grids] == [
        ("images/separated", 1)
    ] * 2  # epochs 2, 4
