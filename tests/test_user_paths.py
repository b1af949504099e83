"""The paths a newcomer takes first: a fresh working folder with no ``hydra.run.dir`` (the default ``outputs/``),
sweeps over config groups and experiments, the same command twice, a kill while a job starts, mistakes, and what
a run says at its end."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import QUICK, assert_user_error, cli_env, run_advnets, run_cli, run_refused

TINY = [*QUICK, "trainer.max_epochs=2", "eval.metrics=[]", "logger=none"]
"""A run cut to a few seconds for sweeps of several jobs."""


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _runs_below(folder: Path) -> list[Path]:
    """The run folders under ``folder`` (each has .hydra/config.yaml; history entries are not runs)."""
    return sorted(p.parent.parent for p in folder.rglob(".hydra/config.yaml") if "history" not in p.parts)


def _state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``folder`` with its md5 and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_first_run_from_a_fresh_folder_says_where_its_results_are_and_what_it_scored(tmp_path: Path) -> None:
    proc = run_cli("train", *QUICK, cwd=tmp_path, WANDB_SILENT="false")  # W&B as by default
    _ok(proc)
    (run,) = _runs_below(tmp_path / "outputs")
    assert run.parent == tmp_path / "outputs" / "quickstart"
    results = json.loads((run / "results.json").read_text())
    assert "warning" not in proc.stderr.lower(), proc.stderr[-3000:]  # nothing but the run on a normal run
    said = proc.stdout.splitlines()
    start = said.index(f"advnets: run {run}")
    summary = said[start:]
    assert f"test Parzen log-likelihood {results['parzen_ll']:.1f} ± {results['parzen_se']:.1f} nats" in summary[1]
    assert "300 samples: fewer samples than the paper" in summary[1]
    fid, floor = results["metrics"]["fid"], results["metrics_reference"]["fid"]
    assert f"fid {fid:.3g} ({floor:.3g})" in "\n".join(summary)
    assert summary[-1].startswith("  files: results.json, metrics.json") and str(run) in summary[-1]
    # W&B runs quietly (its closing history and summary not printed): the run's own lines above say what it scored
    assert "Run summary:" not in proc.stderr and "Run history:" not in proc.stderr


@pytest.mark.parametrize(
    "mistake,fragment",
    [
        ("model.noise_dim=0", "model.noise_dim=0"),  # the schema, before anything is built
        ("dataset.batch_size=5000", "dataset.batch_size=5000"),  # the data, once loaded
    ],
)
def test_a_mistake_on_the_default_path_leaves_no_folder_and_no_warning(
    tmp_path: Path, mistake: str, fragment: str
) -> None:
    proc = run_cli("train", *QUICK, mistake, cwd=tmp_path)
    assert_user_error(proc, fragment)
    assert "Warning" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


def test_the_same_command_twice_leaves_the_finished_run_untouched(tmp_path: Path) -> None:
    """Run as a user runs it, each command a process of its own: its W&B run is written out when it exits."""
    run_dir = tmp_path / "my-run"  # a folder the user named, to come back to
    command = [*QUICK, f"hydra.run.dir={run_dir}"]
    _ok(run_cli("train", *command, cwd=tmp_path))
    before = _state(run_dir)
    again = run_cli("train", *command, cwd=tmp_path)
    _ok(again)
    assert again.stdout.strip().splitlines() == [f"advnets: run {run_dir} is finished (results.json); nothing to do"]
    assert _state(run_dir) == before  # nothing written: no file, no W&B run, not even the lock or Hydra's record

    more = run_cli("train", *command, "trainer.max_epochs=6", "allow_config_change=true", cwd=tmp_path)
    _ok(more)
    assert f"advnets: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in more.stdout
    job_log = (run_dir / "train.log").read_text()  # Hydra's per-job log holds advnets' lines too
    assert f"[advnets.training][INFO] - resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in job_log
    assert f"advnets: run {run_dir}\n  test Parzen log-likelihood" in job_log and "is finished" not in job_log
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_trained"] == 6
    assert [line.split(",")[0] for line in (run_dir / "val_curve.csv").read_text().splitlines()[1:]] == ["2", "4", "6"]
    (kept,) = (run_dir / ".hydra" / "history").iterdir()  # the first start's record, kept when the config changed
    assert "trainer.max_epochs=6" not in (kept / "overrides.yaml").read_text()


def test_a_finished_sweep_job_started_again_does_nothing(tmp_path: Path) -> None:
    """What a requeue or a rerun of the same sweep does to a job that had already finished."""
    sweep = tmp_path / "sweep"
    command = ["-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}"]
    _ok(run_advnets("train", *command, cwd=tmp_path))
    before = {job: _state(sweep / job) for job in ("0", "1")}
    again = run_advnets("train", *command, cwd=tmp_path)
    _ok(again)
    assert again.stdout.count("is finished (results.json); nothing to do") == 2
    for job in ("0", "1"):
        after = _state(sweep / job)
        assert {k: v for k, v in after.items() if not k.startswith(".hydra/")} == {
            k: v for k, v in before[job].items() if not k.startswith(".hydra/")
        }
        assert len(list((sweep / job / ".hydra" / "history").iterdir())) == 1  # no entry for a start that did nothing


def test_the_config_history_survives_kills_while_a_job_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _ok(run_cli("train", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path))
    original = (run_dir / ".hydra" / "config.yaml").read_text()
    rerun = [sys.executable, "-m", "advnets.cli.train", *TINY, "trainer.max_epochs=3", "allow_config_change=true"]
    rng = random.Random(3)
    for _ in range(6):  # strike anywhere in the start: Hydra composing, the record being stashed or written
        proc = subprocess.Popen(
            [*rerun, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.5, 3.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = subprocess.run(
        [*rerun, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    _ok(final)
    assert "Warning" not in final.stderr and "KeepPreviousRunConfig" not in final.stderr, final.stderr[-3000:]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".hydra.")]  # no stash left behind
    records = [p.read_text() for p in (run_dir / ".hydra" / "history").glob("*/config.yaml")]
    assert original in records  # the first start's record is never lost


def _job_config(job: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "config.yaml"), resolve=False)


def test_a_sweep_over_config_groups_runs_each_job_as_composed(tmp_path: Path) -> None:
    proc = run_advnets("train", "-m", *TINY, "optimizer=adam,paper_sgd", "logger=csv,none", cwd=tmp_path)
    _ok(proc)
    jobs = _runs_below(tmp_path / "outputs" / "quickstart" / "multirun")
    assert len(jobs) == 4
    configs = [_job_config(job) for job in jobs]
    optimizers = [c["optimizer"]["generator"]["_target_"] for c in configs]
    assert optimizers == ["torch.optim.Adam", "advnets.optim.ClassicMomentum"] * 2  # logger (named first) outermost
    assert [sorted(c["logger"] or {}) for c in configs] == [["csv"], ["csv"], [], []]
    assert all((job / "results.json").is_file() for job in jobs)
    assert (jobs[0] / "csv" / "metrics.csv").is_file() and not (jobs[2] / "csv").exists()


def test_a_sweep_over_experiments_and_datasets_goes_in_one_sweep_folder(tmp_path: Path, mnist_dir: str) -> None:
    proc = run_advnets(
        "train",
        "-m",
        *TINY,
        "experiment=quickstart,paper_fashion_mnist",
        "trainer.limit_train_batches=2",
        cwd=tmp_path,
    )
    _ok(proc)
    (sweep,) = (tmp_path / "outputs" / "quickstart+paper_fashion_mnist" / "multirun").iterdir()
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["quickstart+paper_fashion_mnist"]
    datasets = [json.loads((sweep / job / "results.json").read_text())["dataset"] for job in ("0", "1")]
    assert datasets == ["digits", "fashion_mnist"]

    proc = run_advnets("train", "-m", *TINY, "dataset=digits,mnist", "trainer.limit_train_batches=2", cwd=tmp_path)
    _ok(proc)
    jobs = _runs_below(tmp_path / "outputs" / "quickstart" / "multirun")
    assert [_job_config(job)["dataset"]["name"] for job in jobs] == ["digits", "mnist"]
    assert [_job_config(job)["model"]["generator"]["data_dim"] for job in jobs] == ["${dataset.data_dim}"] * 2
    assert json.loads((jobs[1] / "results.json").read_text())["n_test"] == 10000


def test_glob_range_and_choice_sweep_what_they_name(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["-m", *TINY, "optimizer=glob(*)", "game.update=alternating", "game.k=range(1,3)", "seed=choice(4)"]
    _ok(run_advnets("train", *command, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    jobs = _runs_below(sweep)
    found = [
        (c["optimizer"]["generator"]["_target_"].rsplit(".")[-1], c["game"]["k"], c["seed"])
        for c in map(_job_config, jobs)
    ]
    assert found == [("Adam", 1, 4), ("Adam", 2, 4), ("ClassicMomentum", 1, 4), ("ClassicMomentum", 2, 4)]


def test_optuna_chooses_between_config_groups_from_a_fresh_folder(tmp_path: Path) -> None:
    import optuna

    command = ["-m", "hparams_search=optuna", *TINY, "optimizer=choice(adam,paper_sgd)", "hydra.sweeper.n_trials=2"]
    _ok(run_cli("train", *command, cwd=tmp_path))  # the SQLite study's folder (outputs/) is made for it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{tmp_path}/outputs/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.params["optimizer"] in ("adam", "paper_sgd") for t in study.trials)
    jobs = _runs_below(tmp_path / "outputs" / "quickstart" / "multirun")
    chosen = {t.number: t.params["optimizer"] for t in study.trials}
    targets = {"adam": "torch.optim.Adam", "paper_sgd": "advnets.optim.ClassicMomentum"}
    for job in jobs:
        assert _job_config(job)["optimizer"]["generator"]["_target_"] == targets[chosen[int(job.name)]]


@pytest.mark.parametrize(
    "sweep,fragments",
    [
        (
            ["optimizer=adam,paper_sgd", "optimizer.generator.momentum=0.5,0.9"],
            ["sweep job", "optimizer=adam", "optimizer.generator.momentum is not a key of this job's config"],
        ),
        (["optimizer=glob(*)", "trainer.max_epochs=0"], ["sweep job", "optimizer=adam", "trainer.max_epochs=0"]),
        (["experiment=quickstart,paper_mnist", "game.update=jiont"], ["game.update='jiont'", "joint, alternating"]),
        (["hparams_search=optuna", "game.k=choice(1,2,0)"], ["sweep job", "game.k=0; allowed: an integer >= 1"]),
        (["hparams_search=optuna", "optimizer.lr=interval(-1,0.1)"], ["optimizer.lr=-1.0; allowed: a finite number"]),
        (["hparams_search=optuna", "game.kk=choice(1,2)"], ["game.kk is not a key of this job's config"]),
        (["hparams_search=optuna", "optimizer=choice(adam,sgd)"], ["sweep job", "optimizer=sgd", "adam, paper_sgd"]),
    ],
)
def test_a_bad_sweep_stops_before_its_first_job_and_leaves_nothing(
    tmp_path: Path, sweep: list[str], fragments: list[str]
) -> None:
    proc = run_cli("train", "-m", *QUICK, *sweep, cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert "Launching" not in proc.stdout and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override,expected,absent",
    [
        ("trainer.max_epoch=5", "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)", "+trainer"),
        ("+trainer.max_epoch=5", "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)", "takes"),
        ("game.updat=joint", "unknown key game.updat (did you mean game.update?)", "+game"),
        (
            "trainer.colour=5",
            "unknown key trainer.colour: not in the config (to add a new key: +trainer.colour=5, if "
            "pytorch_lightning.Trainer takes colour)",
            "",
        ),
    ],
)
def test_a_misspelt_key_gets_the_nearest_known_keys(tmp_path: Path, override: str, expected: str, absent: str) -> None:
    proc = run_cli("train", "experiment=quickstart", override, cwd=tmp_path)
    assert_user_error(proc, expected)
    assert not absent or absent not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def finished(quick_run: Path) -> Path:
    """A finished quickstart run (conftest's ``quick_run``), only read here."""
    return quick_run


def test_eval_takes_a_run_folder_and_says_which_checkpoint(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    proc = run_advnets(
        "evaluate",
        f"ckpt_path={finished}",
        "eval.n_samples=300",
        "eval.metrics=[]",
        "logger=none",
        f"hydra.run.dir={out}",
    )
    _ok(proc)
    best = finished / "checkpoints" / "best.ckpt"
    assert f"advnets: evaluating {best} of {finished}\n" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == str(best)
    assert f"test Parzen log-likelihood {results['parzen_ll']:.1f}" in proc.stdout


def test_eval_of_a_file_that_is_not_a_checkpoint_says_so(finished: Path, tmp_path: Path) -> None:
    proc = run_refused(
        "evaluate", f"ckpt_path={finished / 'results.json'}", "logger=none", f"hydra.run.dir={tmp_path / 'e'}"
    )
    assert_user_error(proc, "results.json is not a checkpoint", "torch.save")
    assert "Python objects" not in proc.stderr


def test_a_ddp_spawn_run_reports_its_best_checkpoint_score(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "train",
        *TINY,
        "trainer=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=6",
        "callbacks.parzen_monitor.every_n_epochs=1",
        "optimizer.lr=0.03",  # a curve that rises and falls: the best epoch is not the last
        f"hydra.run.dir={run_dir}",
    )
    _ok(proc)
    curve = [float(line.split(",")[2]) for line in (run_dir / "val_curve.csv").read_text().splitlines()[1:]]
    assert max(curve) != curve[-1], curve  # else this test could not tell best from last
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    (best,) = [v["best_model_score"] for k, v in state["callbacks"].items() if "'monitor': 'val/parzen_ll'" in k]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objective_score"] == pytest.approx(float(best)) == pytest.approx(max(curve), abs=1e-4)


def test_closing_wandb_never_imports_it_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from advnets.run_folder import finish_wandb

    monkeypatch.setitem(sys.modules, "wandb", None)  # a job under logger=csv on a machine where wandb cannot import
    finish_wandb()


def test_startup_of_a_mistake_imports_neither_torch_nor_lightning(tmp_path: Path) -> None:
    probe = (
        "import sys, runpy; sys.argv = ['advnets-train', 'trainer.max_epoch=5']\n"
        "try:\n    runpy.run_module('advnets.cli.train', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('loaded:', sorted(m for m in ('torch', 'pytorch_lightning', 'lightning_fabric') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert "did you mean trainer.max_epochs?" in proc.stderr
    assert proc.stdout.strip() == "loaded: []", proc.stdout + proc.stderr[-2000:]


def _trial_states(storage: str, name: str) -> list[str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]
        except KeyError:
            return []


def test_a_killed_search_is_continued_by_the_same_command(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/outputs/optuna.db"
    command = [sys.executable, "-m", "advnets.cli.train", "-m", "hparams_search=optuna", *TINY]
    command += ["trainer.max_epochs=12", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("outputs/quickstart/multirun/*/0/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the first trial never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its trial, mid-trial
    proc.wait()
    assert _trial_states(storage, "quickstart") == ["RUNNING"]
    again = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    _ok(again)
    assert "1 trial(s) of study quickstart left RUNNING by a stopped sweep: marked FAIL" in again.stdout
    assert _trial_states(storage, "quickstart") == ["FAIL", "COMPLETE", "COMPLETE"]
