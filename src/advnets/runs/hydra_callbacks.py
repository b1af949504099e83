"""Hydra callbacks: a mistake leaves no trace (a new folder removed, an old folder's recorded config restored),
and a sweep's search space is checked against the schema before its first job."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from advnets.errors import EXIT_USER_ERROR, UserError, defer_user_error, find_user_error


def _stamp() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def _copy_files(source: Path, dest: Path) -> None:
    """The record's files (not its ``history/``) from ``source`` to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, dest / path.name)


class KeepPreviousRunConfig(Callback):
    """Every start of a run folder keeps its record. A single run: before Hydra rewrites ``<run>/.hydra/``, the
    old record is stashed; restored if the job fails, else kept as ``.hydra/history/<time>/``. A multirun job
    (e.g. requeued by SLURM into the same folder), whose record Hydra writes before any callback runs: each
    start's record is copied to ``.hydra/history/<time>/`` when it starts."""

    def __init__(self) -> None:
        self.stash: Path | None = None
        self.hydra_dir: Path | None = None
        self.single_run = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra instantiates the sweeper and launcher before it sets HydraConfig in multirun mode, and the
        # sweep dir (and launcher/sweeper settings) use ${name} = ${hydra:runtime.choices.experiment}.
        HydraConfig.instance().set_config(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self.single_run = True
        subdir = config.hydra.output_subdir
        if subdir is None:
            return
        self.hydra_dir = Path(str(config.hydra.run.dir)) / str(subdir)
        stash = self.hydra_dir.with_name(self.hydra_dir.name + ".previous")
        if stash.is_dir():  # left by a killed start: the record of the start before it
            stash.rename(self.hydra_dir / "history" / f"{_stamp()}-killed")
        if (self.hydra_dir / "config.yaml").is_file():
            self.stash = stash
            _copy_files(self.hydra_dir, self.stash)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        subdir = config.hydra.output_subdir
        if self.single_run or subdir is None:
            return
        hydra_dir = Path(str(config.hydra.runtime.output_dir)) / str(subdir)
        if (hydra_dir / "config.yaml").is_file():
            _copy_files(hydra_dir, hydra_dir / "history" / _stamp())

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.stash is None or self.hydra_dir is None or not self.stash.exists():
            return
        if job_return.status == JobStatus.FAILED:
            _copy_files(self.stash, self.hydra_dir)
            shutil.rmtree(self.stash)
        else:
            history = self.hydra_dir / "history"
            history.mkdir(exist_ok=True)
            self.stash.rename(history / _stamp())
        self.stash = None


class UserErrorsLeaveNoTrace(Callback):
    """A single run that stops on a user mistake: the folder Hydra created for it (holding only Hydra's record
    and log, the lock and the overrides record) is removed, and the mistake is handed to the CLI wrapper, which
    prints its one line (instead of Hydra's extra "Error executing job" line). List it before
    KeepPreviousRunConfig: job-end hooks run in reverse order, so this one runs after the config is restored."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.created = False

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.run_dir = Path(str(config.hydra.run.dir))
        self.created = not self.run_dir.exists()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.run_dir is None or job_return.status != JobStatus.FAILED:
            return
        error = find_user_error(job_return._return_value)
        if error is None:
            return
        hydra_only = {str(config.hydra.output_subdir), f"{config.hydra.job.name}.log", ".lock", "overrides.json"}
        if self.created and self.run_dir.is_dir() and {p.name for p in self.run_dir.iterdir()} <= hydra_only:
            shutil.rmtree(self.run_dir)
        defer_user_error(error)
        job_return.status = JobStatus.COMPLETED
        job_return._return_value = None


class ValidateSearchSpace(Callback):
    """Before a sweep's first job: every swept key exists and every value it can take passes the schema.

    Hydra turns an exception raised by a callback into a warning, so a mistake ends the sweep here with its one
    line and exit status 2 (SystemExit passes through)."""

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from advnets.schema import EVALUATE, TRAIN, validate_search_space

        try:
            validate_search_space(config, TRAIN if config_name == "train" else EVALUATE)
        except UserError as err:
            print(f"advnets: error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
