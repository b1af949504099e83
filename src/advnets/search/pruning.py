"""A trial's job reports to its trial: the best validation objective so far (``cfg.objective``; the trial's value is
its best checkpoint's score, so this is what the trial would score if it stopped now) at every epoch its monitor
scores, step = epoch, through the study's storage; when the study's pruner says so, training stops at once and the
trial is marked pruned (the sweeper then tells it PRUNED). Attached only to a job of advnets' Optuna sweeper."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from advnets.logs import get_logger
from advnets.search.trials import EPOCHS_ATTR, PRUNED_ATTR, TRIAL_ID_ENV

log = get_logger(__name__)


def running_best(best: float | None, value: float, higher_is_better: bool) -> float:
    """The best of ``best`` (None: nothing yet) and ``value``; a NaN never stands for a number."""
    if best is None or math.isnan(best):
        return value
    return max(best, value) if higher_is_better else min(best, value)


class ReportToTrial(pl.Callback):
    """Every ``every_n_epochs`` epochs (the objective's monitor): ``trial.report(best objective so far, epoch)``,
    then ``trial.should_prune()``; a pruned trial stops training after this epoch (``trainer.should_stop``)."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_id: int,
        objective: str,
        every_n_epochs: int,
        pruner: Any,
        higher_is_better: bool = True,
    ) -> None:
        self.storage, self.study_name, self.trial_id = storage, study_name, trial_id
        self.objective, self.every_n_epochs, self.pruner = objective, every_n_epochs, pruner
        self.higher_is_better = higher_is_better
        self.best: float | None = None
        self.pruned_at_epoch: int | None = None
        self._trial: Any = None

    def _open(self) -> Any:
        if self._trial is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = optuna.load_study(
                    study_name=self.study_name,
                    storage=self.storage,
                    sampler=optuna.samplers.RandomSampler(),
                    pruner=self.pruner,
                )
                self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs <= 0 or epoch % self.every_n_epochs:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.objective)
            if value is not None:
                self.best = running_best(self.best, float(value), self.higher_is_better)
                trial = self._open()
                trial.report(self.best, epoch)
                prune = trial.should_prune()
                if prune:
                    trial.set_user_attr(PRUNED_ATTR, epoch)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned_at_epoch = epoch
            trainer.should_stop = True
            log.info("pruned at epoch %d: the study's pruner stopped this trial", epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._open().set_user_attr(EPOCHS_ATTR, int(trainer.current_epoch))


def trial_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """``[ReportToTrial]`` for a job that advnets' Optuna sweeper started for a trial, else ``[]``."""
    trial_id = os.environ.get(TRIAL_ID_ENV)
    if not trial_id:
        return []
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from advnets.metrics import registry
    from advnets.store.studies import storage_url, with_driver

    if not HydraConfig.initialized():
        return []
    sweeper = HydraConfig.get().sweeper
    url = storage_url(sweeper.get("storage"))
    if not url:
        return []
    spec = registry.spec(str(cfg.objective))
    monitor = (cfg.get("callbacks") or {}).get(spec.logged_by or "") or {}
    from optuna.pruners import NopPruner

    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else NopPruner()  # Optuna's default: median
    every = int(monitor.get("every_n_epochs", 0))
    return [
        ReportToTrial(
            with_driver(url),
            str(sweeper.study_name),
            int(trial_id),
            str(cfg.objective),
            every,
            pruner,
            spec.higher_is_better,
        )
    ]


def pruned_at_epoch(trainer: pl.Trainer) -> int | None:
    """The epoch after which the study's pruner stopped this run, or None."""
    for callback in trainer.callbacks:
        if isinstance(callback, ReportToTrial) and callback.pruned_at_epoch is not None:
            return callback.pruned_at_epoch
    return None
