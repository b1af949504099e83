"""advnets' Optuna sweeper (hydra/sweeper=optuna) through the real CLI on the quickstart: a continued study draws
new trials, a pruner stops trials after their first report (and one that prunes nothing changes nothing), every
sweep leaves a readable table of its study (advnets-compare writes it again), what it prints reads naturally
(launch lines without the trial-id variable, the best value named by its metric, a pruned run said to be pruned,
a sweep stopped by failures ending with the line every sweep ends with), and an old study database is one line,
not a traceback."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QUICK, REPO, assert_user_error, cli_env, run_cli, run_refused

SWEEP = [
    "-m",
    "hparams_search=optuna",
    *QUICK,  # 4 epochs, the validation Parzen every 2
    "logger=none",
    "evaluate=false",
    "callbacks.sample_grid.every_n_epochs=0",
    "hydra.sweeper.n_trials=2",
]
PRUNE_ALL = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1e9}"  # no Parzen LL reaches it
PRUNE_NONE = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:-1e9}"  # every Parzen LL does


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _launch_lines(proc) -> list[str]:
    """The job lines the launcher printed (``#0 : overrides``); each must hold the trial's parameters only."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if " : " in line and "\t#" in line]
    assert lines, proc.stderr[-2000:]
    return lines


def _trials(tmp_path: Path, name: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db").trials


def _sweep(tmp_path: Path, folder: str, *overrides: str):
    return run_cli("train", *SWEEP, f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / folder}", *overrides)


def test_the_same_command_again_continues_the_study_with_new_parameters(tmp_path: Path) -> None:
    for folder in ("first", "again"):
        proc = _sweep(tmp_path, folder, "trainer.max_epochs=2")
        _ok(proc)
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
        assert "trials.csv" in last and "trials.md" in last, last  # the last line names the study's tables
    trials = _trials(tmp_path, "quickstart")
    best = max(trials, key=lambda t: t.value)  # the study's best, as the second sweep says it
    folder = best.user_attrs["run_folder"]  # a run folder of the first sweep or of this one: named, not guessed
    said = f"Best val/parzen_ll = {best.value} (study trial {best.number}, run folder {folder})"
    assert said in proc.stdout + proc.stderr
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    drawn = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(drawn)) == 4, drawn  # the second sweep did not restart the first one's random stream
    with (tmp_path / "again" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert [r["run_folder"] for r in rows[2:]] == [str(tmp_path / "again" / j) for j in ("0", "1")]
    assert all(r["epochs"] == "2" for r in rows)
    assert abs(float(rows[3]["objective"]) - trials[3].value) < 1e-4  # written with 6 significant digits
    hours = sum(float(r["hours"]) for r in rows)
    table = (tmp_path / "again" / "trials.md").read_text()
    assert "| 3 | COMPLETE |" in table
    assert f"4 trials (4 complete); the complete and pruned ones trained 8 epochs in {hours:.2f} hours" in table
    assert (tmp_path / "again" / "optuna_history.png").read_bytes()[:4] == b"\x89PNG"
    assert all(0 < float(r["hours"]) < 1 for r in rows)  # each trial's start to end
    # the folder holding both sweeps, given from inside it: one study, reported once, with all its trials, their
    # run folders as the working folder sees them
    _ok(run_cli("compare", ".", "--out", "cmp", cwd=tmp_path))
    with (tmp_path / "cmp" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["run_folder"] for r in rows] == ["first/0", "first/1", "again/0", "again/1"]
    assert not [path for path in (tmp_path / "cmp").iterdir() if path.is_dir()]


def test_a_pruner_that_prunes_everything_stops_each_trial_at_its_first_report(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "pruned", PRUNE_ALL)
    _ok(proc)  # a pruned trial is not a failure
    trials = _trials(tmp_path, "quickstart")
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for trial, job in zip(trials, ("0", "1"), strict=True):
        assert list(trial.intermediate_values) == [2]  # reported at epoch 2 (the first Parzen), then stopped
        assert trial.value == trial.intermediate_values[2]
        metrics = json.loads((tmp_path / "pruned" / job / "metrics.json").read_text())
        assert metrics["pruned_at_epoch"] == 2
        curve = (tmp_path / "pruned" / job / "val_curve.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in curve[1:]] == ["2"]  # none of its 4 epochs after the 2nd was trained
        assert trial.user_attrs["epochs_trained"] == 2
        summary = (tmp_path / "pruned" / job / "train.log").read_text()
        assert "pruned at epoch 2 by the study's pruner (a pruned trial is not evaluated)" in summary
        assert f"the objective at its best checkpoint {trial.value:.4g} (the trial's value)" in summary
        assert "trained 2 epochs" not in summary and "evaluate=false" not in summary
    for line in _launch_lines(proc):  # the trial-id variable reaches each job (it was pruned) unseen
        assert "ADVNETS_OPTUNA_TRIAL_ID" not in line and "env_set" not in line, line
    assert "| PRUNED |" in (tmp_path / "pruned" / "trials.md").read_text()
    compared = run_cli("compare", str(tmp_path / "pruned"), "--out", str(tmp_path / "cmp"))
    _ok(compared)
    with (tmp_path / "cmp" / "compare_runs.csv").open() as handle:
        assert [r["pruned_at_epoch"] for r in csv.DictReader(handle)] == ["2", "2"]
    # an Optuna sweep folder: compare writes its study's tables and plots too, and its last line names them
    with (tmp_path / "cmp" / "trials.csv").open() as handle:
        assert [(r["number"], r["state"], r["pruned_at_epoch"]) for r in csv.DictReader(handle)] == [
            ("0", "PRUNED", "2"),
            ("1", "PRUNED", "2"),
        ]
    table = (tmp_path / "cmp" / "trials.md").read_text()
    assert "| 1 | PRUNED |" in table and "2 trials (2 pruned); the complete and pruned ones trained 4 epochs" in table
    assert (tmp_path / "cmp" / "optuna_history.png").read_bytes()[:4] == b"\x89PNG"
    last = compared.stdout.strip().splitlines()[-1]
    assert last.startswith("advnets-compare: wrote compare.csv") and last.endswith(f"to {tmp_path / 'cmp'}"), last
    assert "trials.csv, trials.md, optuna_history.png" in last, last


def test_a_job_of_the_local_launcher_reports_to_its_trial(tmp_path: Path) -> None:
    local = ["hydra/launcher=local", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", PRUNE_ALL]
    proc = _sweep(tmp_path, "local", *local)  # a job in a process of its own gets the trial id from env_set
    _ok(proc)
    [trial] = _trials(tmp_path, "quickstart")
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [2]
    for line in _launch_lines(proc):
        assert "ADVNETS_OPTUNA_TRIAL_ID" not in line, line


def test_a_pruner_that_prunes_nothing_changes_nothing(tmp_path: Path) -> None:
    _ok(_sweep(tmp_path, "plain", "hydra.sweeper.study_name=plain"))
    _ok(_sweep(tmp_path, "lenient", "hydra.sweeper.study_name=lenient", PRUNE_NONE))
    plain, lenient = _trials(tmp_path, "plain"), _trials(tmp_path, "lenient")
    assert [t.state.name for t in plain + lenient] == ["COMPLETE"] * 4
    assert [t.params for t in plain] == [t.params for t in lenient]  # same seed, same trial numbers: same draws
    assert [t.value for t in plain] == [t.value for t in lenient]
    assert [sorted(t.intermediate_values) for t in lenient] == [[2, 4], [2, 4]]  # reported, never stopped
    for job, trial in zip(("0", "1"), lenient, strict=True):
        metrics = json.loads((tmp_path / "lenient" / job / "metrics.json").read_text())
        assert "pruned_at_epoch" not in metrics and metrics["run/epochs"] == 4
        # each report is the best validation score so far: what the trial would score if it stopped there
        with open(tmp_path / "lenient" / job / "val_curve.csv") as f:
            curve = {int(row["epoch"]): float(row["val_parzen_ll"]) for row in csv.DictReader(f)}
        best = {2: curve[2], 4: max(curve[2], curve[4])}  # val_curve.csv holds 4 decimals
        assert trial.intermediate_values == pytest.approx(best, abs=1e-4)
        assert trial.value == pytest.approx(max(curve.values()), abs=1e-4)


def test_the_report_to_a_trial_is_the_best_score_so_far() -> None:
    from advnets.search.pruning import running_best

    assert running_best(None, -7.5, higher_is_better=True) == -7.5
    assert running_best(-7.5, -9.0, higher_is_better=True) == -7.5 and running_best(-7.5, -6.0, True) == -6.0
    assert running_best(0.3, 0.5, higher_is_better=False) == 0.3 and running_best(0.3, 0.1, False) == 0.1
    assert running_best(float("nan"), -8.0, higher_is_better=True) == -8.0  # a NaN never stands for a number


def test_a_sweep_without_a_pruner_stops_no_trial(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="quickstart", storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize"
    )
    for _ in range(5):  # Optuna's default pruner (median, after 5 trials) would stop any trial below these
        study.add_trial(optuna.trial.create_trial(value=1e9, intermediate_values={2: 1e9}, params={}, distributions={}))
    _ok(_sweep(tmp_path, "plain", "hydra.sweeper.n_trials=1"))
    trial = _trials(tmp_path, "quickstart")[-1]
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [2, 4]  # reported, not stopped


def test_a_study_database_of_an_older_optuna_is_one_line_naming_the_upgrade(tmp_path: Path) -> None:
    import optuna

    database = tmp_path / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="quickstart", storage=f"sqlite:///{database}")
    with sqlite3.connect(database) as db:  # the schema revision Optuna 2.10 leaves
        db.execute("UPDATE alembic_version SET version_num = 'v2.6.0.a'")
        db.execute("UPDATE version_info SET library_version = '2.10.1'")
    before = database.read_bytes()
    proc = _sweep(tmp_path, "refused")
    assert_user_error(proc, f"hydra.sweeper.storage=sqlite:///{database}", "optuna storage upgrade")
    assert database.read_bytes() == before
    assert not (tmp_path / "refused").exists()


def test_retry_failed_runs_a_failed_trials_parameters_again(tmp_path: Path) -> None:
    retried = [
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.max_failure_rate=1.0",
        "hydra.sweeper.retry_failed=1",
        "optimizer.lr=interval(0.001,0.1)",
        "dataset.batch_size=5000",  # larger than the data (1,200 images): every trial raises before training
    ]
    _ok(_sweep(tmp_path, "retried", *retried))
    first, second = _trials(tmp_path, "quickstart")
    assert [first.state.name, second.state.name] == ["FAIL", "FAIL"]
    assert second.params == first.params  # drawn anew, its lr would differ
    assert second.system_attrs["failed_trial"] == 0


def test_a_sweep_stopped_by_its_failure_rate_ends_with_the_failed_jobs_line(tmp_path: Path) -> None:
    failing = ["hydra.sweeper.n_jobs=1", "hydra.sweeper.max_failure_rate=0.5", "dataset.batch_size=5000"]
    proc = _sweep(tmp_path, "stopped", *failing)  # 1 of 1 trial of the first batch fails: over 0.5, the sweep stops
    assert proc.returncode != 0
    assert f"advnets: error: 1 of 1 jobs failed: {tmp_path / 'stopped' / '0'}\n" in proc.stderr, proc.stderr[-2000:]
    assert [t.state.name for t in _trials(tmp_path, "quickstart")] == ["FAIL"]  # the second trial never started


def test_a_pruner_that_is_not_one_is_one_line_before_any_trial(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "refused", "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPrunr}")
    assert_user_error(proc, "hydra.sweeper.pruner=", "MedianPrunr", "allowed: an Optuna pruner")
    assert not (tmp_path / "refused").exists()


def test_the_grid_sampler_runs_each_point_of_its_grid_once(tmp_path: Path) -> None:
    grid = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        *QUICK,
        "logger=none",
        "evaluate=false",
        "trainer.max_epochs=2",
        "hydra.sweeper.direction=maximize",
        "hydra.sweeper.study_name=quickstart",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        "hydra.sweeper.n_trials=9",
        "game.update=choice(joint,alternating)",
    ]
    _ok(run_cli("train", *grid, "game.k=range(1,3)", f"hydra.sweep.dir={tmp_path / 'grid'}"))
    trials = _trials(tmp_path, "quickstart")
    points = sorted((t.params["game.update"], t.params["game.k"]) for t in trials)  # range(1,3): 1 and 2
    assert points == [("alternating", 1), ("alternating", 2), ("joint", 1), ("joint", 2)]
    assert {t.state.name for t in trials} == {"COMPLETE"}
    refused = run_cli("train", *grid, "optimizer.lr=interval(0.001,0.1)", f"hydra.sweep.dir={tmp_path / 'refused'}")
    assert_user_error(refused, "optimizer.lr: an interval has no grid", "choice() or range()")


def _running_trials(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
        except sqlite3.OperationalError:  # tables not made yet
            return 0


def test_a_second_sweeper_on_a_busy_sqlite_study_is_refused_and_the_first_finishes(tmp_path: Path) -> None:
    """SQLite serves one sweeper at a time: a second one started on the same study while the first runs a trial is
    one line naming PostgreSQL, and does not fail the first one's running trial as left over by a stopped sweep."""
    database = tmp_path / "optuna.db"
    first = [*SWEEP, "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", "trainer.max_epochs=40"]
    cmd = [sys.executable, "-m", "advnets.cli.train", *first, f"paths.log_dir={tmp_path}"]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            [*cmd, f"hydra.sweep.dir={tmp_path / 'first'}"], cwd=REPO, env=cli_env(), stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 300
        while _running_trials(database) == 0:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.5)
        second = run_refused("train", *SWEEP, f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'second'}")
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]  # the first sweep still runs
        assert_user_error(second, f"sqlite:///{database}", "in use by another sweeper", "pid ", "postgresql://")
        assert proc.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        proc.kill()
    assert [t.state.name for t in _trials(tmp_path, "quickstart")] == ["COMPLETE"]
    assert not (tmp_path / "second").exists()
    assert not (tmp_path / "optuna.db.sweeper.lock").exists()  # the lock goes with its sweep
    _ok(_sweep(tmp_path, "after", "hydra.sweeper.n_trials=1"))  # the study free again: the next sweep runs
    assert [t.state.name for t in _trials(tmp_path, "quickstart")] == ["COMPLETE", "COMPLETE"]
