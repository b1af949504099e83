"""Hydra callbacks: a rerun in an existing run folder never loses that folder's recorded config."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class KeepPreviousRunConfig(Callback):
    """Before Hydra rewrites ``<run>/.hydra/``, stash the old one; restore it if the job fails, else keep it
    as ``.hydra/history/<time>/`` (a resumed or requeued run keeps the record of every start)."""

    def __init__(self) -> None:
        self.stash: Path | None = None
        self.hydra_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra instantiates the sweeper and launcher before it sets HydraConfig in multirun mode, and the
        # sweep dir (and launcher/sweeper settings) use ${name} = ${hydra:runtime.choices.experiment}.
        HydraConfig.instance().set_config(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        subdir = config.hydra.output_subdir
        if subdir is None:
            return
        self.hydra_dir = Path(str(config.hydra.run.dir)) / str(subdir)
        if (self.hydra_dir / "config.yaml").is_file():
            self.stash = self.hydra_dir.with_name(self.hydra_dir.name + ".previous")
            shutil.rmtree(self.stash, ignore_errors=True)
            shutil.copytree(self.hydra_dir, self.stash)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.stash is None or self.hydra_dir is None or not self.stash.exists():
            return
        if job_return.status == JobStatus.FAILED:
            shutil.rmtree(self.hydra_dir)
            self.stash.rename(self.hydra_dir)
        else:
            history = self.hydra_dir / "history"
            history.mkdir(exist_ok=True)
            self.stash.rename(history / time.strftime("%Y-%m-%d_%H-%M-%S"))
        self.stash = None
