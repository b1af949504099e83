"""Sweeps through the real CLI: Hydra's basic multirun (one W&B run per job, grouped), advnets-compare on it,
a 2-process ddp_spawn multirun, the submitit local launcher, and an Optuna study that survives a diverged and
a crashed trial and resumes from its SQLite storage."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest

from advnets.search.study_report import _plotted
from advnets.store.records import mean_se

from conftest import QUICK, run_advnets, run_cli
from wandb_log import offline_run_file, read_records, run_info


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _only_sweep_dir(log_dir: Path, name: str = "quickstart") -> Path:
    """The one sweep folder a multirun made under ``paths.log_dir`` (Hydra's default sweep dir)."""
    sweeps = list((log_dir / name / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def test_basic_multirun_two_jobs_two_wandb_runs_one_group_and_compare(tmp_path: Path) -> None:
    # the default sweep dir (${paths.log_dir}/${name}/multirun/<time>) resolves in multirun mode
    _ok(run_cli("train", "-m", *QUICK, "seed=1,2", f"paths.log_dir={tmp_path}"))
    sweep = _only_sweep_dir(tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    results = [json.loads((sweep / j / "results.json").read_text()) for j in ("0", "1")]
    assert [r["seed"] for r in results] == [1, 2]

    runs = [run_info(read_records(offline_run_file(sweep / j))) for j in ("0", "1")]
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == 2
    assert ids == [(sweep / j / "wandb_id.txt").read_text().strip() for j in ("0", "1")]
    assert runs[0].run_group == runs[1].run_group == f"train:{sweep.name}"
    assert runs[0].job_type == "train"
    assert "seed=1" in runs[0].tags and "seed=2" in runs[1].tags
    assert runs[0].display_name != runs[1].display_name

    proc = run_advnets("compare", str(sweep))
    _ok(proc)
    assert "advnets-compare: digits" in proc.stdout and "1,2" in proc.stdout
    with (sweep / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1  # the two seeds form one group
    row = rows[0]
    assert row["runs"] == "2" and row["seeds"] == "1,2" and row["dataset"] == "digits"
    mean, se = mean_se([r["parzen_ll"] for r in results])
    assert float(row["test_parzen_ll_mean"]) == pytest.approx(mean)
    assert float(row["test_parzen_ll_se"]) == pytest.approx(se)
    with (sweep / "compare_runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert (sweep / "compare_val_parzen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 2 | 1,2 |" in (sweep / "compare.md").read_text()


def test_ddp_spawn_multirun_makes_one_sweep_folder_with_one_result_per_job(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "-m",
        *QUICK,
        "trainer=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "logger=none",
        "seed=1,2",
        "+callbacks.digest._target_=probes.ParamDigest",
        f"paths.log_dir={tmp_path}",
    )
    _ok(proc)
    assert [p.name for p in tmp_path.iterdir()] == ["quickstart"]  # no second sweep started by a rank
    sweep = _only_sweep_dir(tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, seed in (("0", 1), ("1", 2)):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["seed"] == seed and results["n_samples"] == 300
        ranks = [json.loads((sweep / job / f"params_rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["world"] for r in ranks] == [2, 2]
        assert ranks[0]["sum"] == ranks[1]["sum"]  # one DDP job: identical parameters on both ranks
    assert proc.stdout.count("Launching 2 jobs locally") == 1


def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _ok(
        run_cli(
            "train",
            "-m",
            "hydra/launcher=local",
            *QUICK,
            "trainer.max_epochs=2",
            "logger=none",
            "evaluate=false",
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
        )
    )
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["val/parzen_ll"] < 0
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in p.read_text() for p in logs)


def _study(storage: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def test_optuna_study_survives_a_diverged_and_a_crashed_trial_and_resumes(tmp_path: Path) -> None:
    import optuna

    storage, name = f"sqlite:///{tmp_path}/optuna.db", "test-study"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2.x
        warnings.simplefilter("ignore")
        for lr in (1e12, 0.01, 0.01):  # trial 0: SGD with lr 1e12 diverges to NaN in epoch 1
            study.enqueue_trial({"optimizer.lr": lr, "dataset.batch_size": 100})
    common = [
        "hparams_search=optuna",
        *QUICK,
        "optimizer=paper_sgd",
        "optimizer.lr=choice(0.01,1e12)",
        "dataset.batch_size=choice(100,5000)",  # 5000 passes the schema but not the data (1200 images): a crash
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
    ]
    first = run_cli("train", "-m", *common, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}/s1")
    _ok(first)
    assert "advnets: training diverged in epoch 1" in first.stdout + first.stderr
    trials = _study(storage, name).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert trials[0].params["optimizer.lr"] == 1e12 and trials[0].value == -1.0e6  # finite "failed" score
    assert all(t.value > -1.0e6 for t in trials[1:])
    diverged = json.loads((tmp_path / "s1" / "0" / "metrics.json").read_text())
    assert diverged["diverged_at_epoch"] == 1 and not (tmp_path / "s1" / "0" / "results.json").exists()
    assert "best_value" in (tmp_path / "s1" / "optimization_results.yaml").read_text()

    # the same command again continues the study; a trial that raises (batch larger than the data -> UserError)
    # is a counted failure, not the end of the study (max_failure_rate 0.5 per batch of n_jobs=2)
    study = _study(storage, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in (5000, 100):
            study.enqueue_trial({"optimizer.lr": 0.01, "dataset.batch_size": batch})
    second = run_cli("train", "-m", *common, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}/s2")
    _ok(second)
    trials = _study(storage, name).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert "dataset.batch_size=5000" in second.stdout + second.stderr
    crashed = tmp_path / "s2" / "0"
    assert second.stderr.splitlines()[-1] == f"advnets: warning: 1 of 2 jobs failed: {crashed}"  # the search went on
    assert "Error executing job" not in second.stderr

    # advnets-compare reports the diverged trial as such, next to the others
    proc = run_advnets("compare", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "cmp"))
    _ok(proc)
    with (tmp_path / "cmp" / "compare_runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 4  # the crashed trial left no finished run
    assert sum(r["diverged"] == "True" for r in runs) == 1
    # ... and the study's report keeps it in its table, but out of Optuna's plots (its -1e6 would flatten the rest)
    table = (tmp_path / "cmp" / "trials.md").read_text()
    assert "| 0 | COMPLETE |" in table and "1 diverged (scored ±1e+06, the failed value): in the table, not in" in table
    shown = _plotted(_study(storage, name)).trials
    assert len(shown) == 4 and all(t.value > -1.0e6 for t in shown if t.state.name == "COMPLETE")


def test_a_sweep_with_a_failing_job_runs_the_rest_and_ends_saying_which_failed(tmp_path: Path) -> None:
    """Job 1 asks for a batch larger than the data: it fails with its one error line, in its own train.log too;
    job 0 and job 2 still run; the sweep ends with how many of its jobs failed and where (exit status 1)."""
    sweep = tmp_path / "sweep"
    proc = run_advnets(
        "train", "-m", *QUICK, "logger=csv", "dataset.batch_size=100,5000,50", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Error executing job" not in proc.stderr and "Traceback" not in proc.stderr
    why = "dataset.batch_size=5000 is larger than the 1200 training images of digits; allowed: 1..1200"
    assert proc.stderr.splitlines()[-2:] == [
        f"advnets: error: job 1 ({sweep / '1'}) failed: {why}",
        f"advnets: error: 1 of 3 jobs failed: {sweep / '1'}",
    ]
    assert f"job 1 ({sweep / '1'}) failed: {why}" in (sweep / "1" / "train.log").read_text()
    assert (sweep / "0" / "results.json").is_file() and (sweep / "2" / "results.json").is_file()


def test_a_sweep_in_the_default_folder_counts_its_failed_job(tmp_path: Path) -> None:
    """From a fresh folder with no hydra.sweep.dir (its path interpolates the experiment's name): one job of two
    fails, the other runs, and the sweep ends with how many failed (exit 1), with no warning from a callback."""
    proc = run_advnets("train", "-m", *QUICK, "logger=none", "dataset.batch_size=100,5000", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "raised" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "quickstart" / "multirun").iterdir()
    assert proc.stderr.splitlines()[-1] == f"advnets: error: 1 of 2 jobs failed: {sweep / '1'}"
    assert (sweep / "0" / "results.json").is_file()
