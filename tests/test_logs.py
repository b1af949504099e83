"""advnets' log: one line per record on the terminal (warnings and errors on stderr), the job's log file beside it,
rank zero only under DDP, levels from ADVNETS_LOG_LEVEL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from lightning_fabric.utilities.rank_zero import rank_zero_only

from advnets.logs import JOB_LOG, TERMINAL, get_logger

from conftest import QUICK, assert_user_error, cli_env, run_cli


@pytest.fixture
def job_log(tmp_path: Path):
    """A file handler on the root logger, as Hydra's job logging installs for ``<run>/train.log``."""
    handler = logging.FileHandler(tmp_path / "train.log")
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield tmp_path / "train.log"
    root.removeHandler(handler)
    handler.close()


def test_levels_go_to_their_stream_and_the_job_log(job_log: Path, capsys) -> None:
    log = get_logger("advnets.somewhere")
    log.info("resuming from %s", "x.ckpt")
    log.warning("damaged %s", "last.ckpt")
    log.info("only on the terminal", extra=TERMINAL)
    log.info("only in the file", extra=JOB_LOG)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["advnets: resuming from x.ckpt", "advnets: only on the terminal"]
    assert err.splitlines() == ["advnets: warning: damaged last.ckpt"]
    assert job_log.read_text().splitlines() == [
        "[advnets.somewhere][INFO] - resuming from x.ckpt",
        "[advnets.somewhere][WARNING] - damaged last.ckpt",
        "[advnets.somewhere][INFO] - only in the file",
    ]


def test_only_rank_zero_logs_unless_asked(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    get_logger("advnets.somewhere").warning("rank zero's")
    everywhere = get_logger("advnets.somewhere", rank_zero_only=False)
    everywhere.warning("every rank's")
    everywhere.info("rank 0's alone", rank=0)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["advnets: warning: [rank 1] every rank's"]


def test_the_level_comes_from_the_environment(tmp_path: Path) -> None:
    probe = "from advnets.logs import get_logger; log = get_logger('x'); log.info('said'); log.warning('warned')"
    quiet = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(ADVNETS_LOG_LEVEL="WARNING"), capture_output=True, text=True
    )
    assert (quiet.stdout, quiet.stderr) == ("", "advnets: warning: warned\n")
    wrong = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(ADVNETS_LOG_LEVEL="LOUD"), capture_output=True, text=True
    )
    assert wrong.stdout == "advnets: said\n"
    assert (
        wrong.stderr.splitlines()[0]
        == "advnets: warning: ADVNETS_LOG_LEVEL=LOUD; allowed: DEBUG, INFO, WARNING, ERROR (INFO used)"
    )


def test_a_level_above_error_is_refused_so_mistakes_are_still_said(tmp_path: Path) -> None:
    proc = run_cli("train", *QUICK, "game.update=nope", cwd=tmp_path, ADVNETS_LOG_LEVEL="CRITICAL")
    assert_user_error(proc, "game.update")
    assert proc.stderr.startswith("advnets: warning: ADVNETS_LOG_LEVEL=CRITICAL; allowed:"), proc.stderr


def test_a_real_run_logs_into_its_train_log_and_a_level_silences_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [*QUICK, f"hydra.run.dir={run_dir}"]
    first = run_cli("train", *command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    job_log = (run_dir / "train.log").read_text()  # Hydra's per-job log, in Hydra's format
    assert f"[advnets.training][INFO] - advnets: run {run_dir}\n  test Parzen log-likelihood" in job_log, job_log
    assert f"advnets: run {run_dir}\n  test Parzen log-likelihood" in first.stdout  # and the terminal's summary

    quiet = run_cli("train", *command, cwd=tmp_path, ADVNETS_LOG_LEVEL="WARNING")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "advnets:" not in quiet.stdout + quiet.stderr, (quiet.stdout, quiet.stderr)
    said = run_cli("train", *command, cwd=tmp_path)  # the same rerun at the default level says it
    assert said.stdout.splitlines() == [f"advnets: run {run_dir} is finished (results.json); nothing to do"]
    assert (run_dir / "train.log").read_text() == job_log  # a finished run's log is left as it was


def test_an_optuna_sweeps_output_holds_no_colour_codes(tmp_path: Path) -> None:
    """An Optuna search's output and its jobs' log files hold no colour codes when captured (not a terminal)."""
    sweep, storage = tmp_path / "sweep", f"sqlite:///{tmp_path}/optuna.db"
    overrides = ["hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={storage}"]
    proc = run_cli("train", "-m", "hparams_search=optuna", *QUICK, "logger=csv", *overrides, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "advnets: Study quickstart" in proc.stdout, proc.stdout[-2000:]
    assert "\x1b[" not in proc.stdout + proc.stderr
    assert "\x1b[" not in (sweep / "0" / "train.log").read_text()
