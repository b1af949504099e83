"""Shared fixtures: the real config (Hydra compose API), real data, the real CLI (in a subprocess or in the test
process: `inprocess.py`) and one finished quickstart run per worker (`quick_run`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from advnets import CONF_DIR

from inprocess import run_inprocess

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def quiet_trainer(**overrides: object) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar, summary or validation, for tests that fit the game
    directly; ``overrides`` are further Trainer arguments."""
    settings: dict[str, object] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
        "limit_val_batches": 0,
    }
    return pl.Trainer(**{**settings, **overrides})


@pytest.fixture(autouse=True, scope="session")
def metric_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The metric cache of the whole session (and of its subprocesses) in a fresh folder, not in ~/.cache."""
    folder = tmp_path_factory.mktemp("metric-cache")
    os.environ["ADVNETS_CACHE_DIR"] = str(folder)
    return folder


def compose_cfg(overrides: list[str], output_dir: Path | str = "/tmp/advnets-unused") -> DictConfig:
    """The composed training config, as the CLI would build it (without a Hydra run)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", "name=test", *overrides])


def data_dir_holding(name: str) -> str:
    """ADVNETS_DATA_DIR when it holds ``name``/raw (CI sets it to ../shared/data); else the test is skipped."""
    path = os.environ.get("ADVNETS_DATA_DIR")
    if not path or not (Path(path) / name / "raw").is_dir():
        pytest.skip(f"set ADVNETS_DATA_DIR to a folder with {name}/raw (CI sets it)")
    return path


@pytest.fixture
def mnist_dir() -> str:
    """The folder holding MNIST/raw."""
    return data_dir_holding("MNIST")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
        # this checkout's src first; what PYTHONPATH held stays after it (device-check.sh's carried wheels)
        PYTHONPATH=os.pathsep.join(
            [str(REPO / "src"), str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    env.pop("HYDRA_FULL_ERROR")
    env.update(extra)
    return env


def run_cli(
    module: str, *args: str, timeout: int = 600, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    """Run ``python -m advnets.cli.<module> ARGS`` for real, from the repository root (or ``cwd``: a fresh
    working folder, as a newcomer runs it, with the default ``outputs/`` below it)."""
    return subprocess.run(
        [sys.executable, "-m", f"advnets.cli.{module}", *args],
        cwd=cwd or REPO,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_advnets(module: str, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``advnets-<module> ARGS`` as ``run_cli`` runs it (same environment, same folder, same result), inside this
    test process: the imports are paid once per worker (``inprocess.run_inprocess``). A command that writes a
    W&B run (the default logger of train and eval) still gets a process of its own: W&B's service finishes
    writing the run's files only when the process that started it exits."""
    if module in ("train", "evaluate") and writes_wandb(args):
        return run_cli(module, *args, cwd=cwd, **env)
    return run_inprocess(module, *args, cwd=cwd or REPO, env=cli_env(**env))


def run_refused(module: str, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``advnets-<module> ARGS`` given bad input, which it refuses before it starts a logger, inside this test
    process whatever its logger (``run_advnets`` gives a command that would write a W&B run a process of its own).
    Its exit status and streams are a subprocess's: ``assert_user_error`` reads them alike."""
    return run_inprocess(module, *args, cwd=cwd or REPO, env=cli_env(**env))


def writes_wandb(args: tuple[str, ...] | list[str]) -> bool:
    """Whether a train or eval command line logs to W&B: it runs a job (it does not only print its ``--help`` or
    ``--cfg``) with no ``logger=`` override (W&B is the default), or with one naming wandb."""
    if "--help" in args or "--cfg" in args:
        return False
    loggers = [a.split("=", 1)[1] for a in args if a.startswith("logger=")]
    return not loggers or "wandb" in loggers[-1]


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user mistake: exit 2, no traceback, exactly one ``advnets: error:`` line holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("advnets: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


QUICK = ["experiment=quickstart", "debug=limit", "threads=1"]
"""A quickstart run cut to seconds, for end-to-end tests: 4 epochs of 12 updates, the validation Parzen and sample
grids every 2 epochs, a 300-sample evaluation (conf/debug/limit.yaml)."""


def train_quick(run_dir: Path, *overrides: str) -> Path:
    """Train a QUICK run into ``run_dir`` through the real CLI (``run_advnets``: in-process unless it writes a
    W&B run); fail the test with its stderr if it fails."""
    proc = run_advnets("train", *QUICK, *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


QUICK_RUN = ("trainer.max_epochs=2", "logger=none")
"""The settings of ``quick_run``, besides QUICK: 2 epochs (one validation Parzen, a best checkpoint), evaluated,
no logger."""


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished QUICK run (``QUICK_RUN``), trained once per pytest worker, for the tests that only read a run
    folder (evaluate, publish, refusals that must leave a run as it was). A test that writes into a run folder
    takes ``quick_run_copy``."""
    return train_quick(tmp_path_factory.mktemp("quick-run") / "run", *QUICK_RUN)


@pytest.fixture
def quick_run_copy(quick_run: Path, tmp_path: Path) -> Path:
    """A copy of ``quick_run`` of this test's own, in its ``tmp_path``."""
    return Path(shutil.copytree(quick_run, tmp_path / "quick-run"))


def sacct_states(job: str) -> dict[str, tuple[str, int]]:
    """SLURM's accounting for a job and its array tasks: ``{job id: (state, restarts)}``."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-o", "JobID,State,Restarts", "-j", job], capture_output=True, text=True
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], int(r[2] or 0)) for r in rows}


ONE_WORKER_MODULES = ("test_slurm", "test_cluster", "test_shared_study")
"""Modules whose tests share one costly module fixture (a SLURM layout, a PostgreSQL server): kept on one worker
(``--dist loadgroup``); every other test goes to whichever worker is free."""
SLOW_MARKS = ("slow", "slurm", "cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long end-to-end tests first, so that none starts last on an otherwise idle machine."""
    for item in items:
        module = item.module.__name__ if item.module else ""
        if module in ONE_WORKER_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
    items.sort(key=lambda item: 0 if any(item.get_closest_marker(mark) for mark in SLOW_MARKS) else 1)
