"""One training job: build everything from ``_target_``, fit, evaluate the best checkpoint, return the metric.

``advnets.cli.train`` (``advnets-train``) composes the config and calls ``run``; a run folder that already holds
a finished run is left as it is (``RunFolder.finished``)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from advnets.errors import UserError
from advnets.evaluation import DivergedSamples, EvalSettings, evaluate_run, log_results
from advnets.logs import JOB_LOG, get_logger, quiet_third_party
from advnets.metrics import registry
from advnets.outcome import Score
from advnets.rendezvous import check_rendezvous
from advnets.run_folder import (
    RunFolder,
    comparable_overrides,
    plain_single_run,
    task_overrides,
)
from advnets.schema import TRAIN, validate
from advnets.search.pruning import pruned_at_epoch, trial_callbacks
from advnets.stops import EXIT_STATUS, failed_line, note_sigterm, say_unfinished, stop_line, stop_signals
from advnets.store import atomic
from advnets.store.checkpoints import SafeCheckpointIO, safe_load
from advnets.store.provenance import command_line, source_commit
from advnets.summary import summary_lines
from advnets.threads import intra_op_threads

FAILED_OBJECTIVE = registry.METRICS["parzen_ll"].failed  # a diverged run's Parzen score: finite, worst
log = get_logger(__name__)


def build(
    cfg: DictConfig, folder: RunFolder | None = None
) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Data module, game and trainer from the config; the trainer logs to ``folder``'s loggers (the job's run
    folder, ``RunFolder.of(cfg)`` where none is given).

    G's output bias from the data: read by rank zero alone, which may download it here; the other ranks of a
    launch that starts them all at once (torchrun, SLURM) read the data only after Lightning's prepare_data
    barrier, and DDP gives them rank zero's weights."""
    datamodule = instantiate(cfg.dataset, updates_per_step=cfg.game.get("updates_per_step", 1))
    generator = instantiate(cfg.model.generator)
    if cfg.model.output_bias_from_data and rank_zero_only.rank == 0:
        generator.init_output_bias(datamodule.load().train.mean(0))
    game = instantiate(
        cfg.game,
        generator=generator,
        discriminator=instantiate(cfg.model.discriminator),
        g_optimizer=instantiate(cfg.optimizer.generator),
        d_optimizer=instantiate(cfg.optimizer.discriminator),
        schedule=instantiate(cfg.optimizer.schedule) if cfg.optimizer.get("schedule") else None,
        loss=instantiate(cfg.loss) if cfg.get("loss") else None,
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += trial_callbacks(cfg)  # a trial of advnets' Optuna sweeper: reports to it, stops when pruned
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []] + [SafeCheckpointIO()]
    loggers = (folder or RunFolder.of(cfg)).loggers()
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    return datamodule, game, trainer


def check_config(cfg: DictConfig) -> None:
    """The whole schema, the objective and the metric names: every mistake before anything is built."""
    validate(cfg, TRAIN)
    check_objective(cfg)
    if cfg.get("eval"):
        eval_settings(cfg).check_metrics()  # a typo, or a metric of one's own that does not build, fails now


def eval_settings(cfg: DictConfig) -> EvalSettings:
    """The run's evaluation settings, typed, from its ``eval:`` group."""
    return EvalSettings.from_dict(OmegaConf.to_container(cfg.eval, resolve=True))  # type: ignore[arg-type]


def fit_or_stop(trainer: pl.Trainer, game: Any, datamodule: Any, ckpt_path: str | None) -> None:
    """``trainer.fit``; a rank told to stop (SIGTERM: a requeue, a preemption, scancel) whose fit then breaks,
    e.g. on a collective its stopped peer left, ends as stopped (exit 143), not failed: submitit records no
    failed result for it, so a launcher waiting on the requeued job never takes this rank's error for the job's."""
    try:
        trainer.fit(game, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except Exception as err:
        if not trainer.received_sigterm:
            raise
        log.warning(
            "stopped by SIGTERM during training (%s: %s); the run resumes from last.ckpt", type(err).__name__, err
        )
        raise SystemExit(143) from err


def train(cfg: DictConfig, summary: list[str] | None = None, folder: RunFolder | None = None) -> dict[str, Any]:
    """Fit the game, then (rank zero) run the paper protocol on the best checkpoint; return the metrics, and add
    what the run says at its end to ``summary``. ``folder``: the job's run folder, whose lock the caller frees
    (``RunFolder.close``); where none is given, ``RunFolder.of(cfg)``, whose lock is freed on return.

    A run folder holding a finished run with the same overrides is not touched: its recorded metrics come back."""
    if folder is not None:
        return _train(cfg, summary, folder)
    folder = RunFolder.of(cfg)
    try:
        return _train(cfg, summary, folder)
    finally:
        folder.release()


def _train(cfg: DictConfig, summary: list[str] | None, folder: RunFolder) -> dict[str, Any]:
    check_config(cfg)
    run_dir = folder.path
    done = folder.finished()
    if done is not None:
        return done
    ckpt_path = folder.start()
    if folder.resuming:  # said once the rerun is known to continue the folder (a refused one leaves its log as it was)
        log.info("resuming from %s", ckpt_path)
        # Lightning's notice about the folder's own checkpoints, which a continued run resumes from and replaces
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    elif not ckpt_path and plain_single_run():
        say_unfinished(run_dir, comparable_overrides(), cfg.trainer.get("max_epochs"))
    torch.set_float32_matmul_precision("highest")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    threads = intra_op_threads(cfg.get("threads"), on_gpu)
    if threads:
        torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    check_rendezvous()  # the ranks of a multi-node SLURM job meet within a minute, or one line says where not
    datamodule, game, trainer = build(cfg, folder)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    fit_or_stop(trainer, game, datamodule, ckpt_path)
    # run facts come through callback_metrics: ddp_spawn hands them back from its rank zero (see the game)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    # every start's training time, a resumed run's too (a fit with no epoch left to train sets none)
    train_seconds = metrics.pop("run/train_seconds", None) or game.train_seconds()
    diverged_at = metrics.pop("run/diverged_at_epoch", None)
    if diverged_at is not None:
        metrics.update({"diverged_at_epoch": int(diverged_at), "val/parzen_ll": FAILED_OBJECTIVE})
    pruned_at = pruned_at_epoch(trainer)
    if pruned_at is not None:
        metrics["pruned_at_epoch"] = pruned_at
    metrics["objective_score"] = reported_score(cfg, trainer, metrics, diverged_at is not None)
    metrics.pop("run/best_score", None)
    if not trainer.is_global_zero:
        return metrics
    results = None
    if cfg.evaluate and cfg.get("eval") and diverged_at is None and pruned_at is None:
        results = _evaluate_best(cfg, trainer, game, datamodule, run_dir, train_seconds)
        if results is None:
            metrics["test/parzen_ll"] = FAILED_OBJECTIVE
        else:
            metrics.update(log_results(trainer.loggers, results, run_dir, _log_step(trainer, game)))
            for logger in trainer.loggers:  # the test/ values, logged after fit: written out (CSV, TensorBoard)
                logger.finalize("success")
    finite = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
    atomic.write_json(run_dir / "metrics.json", finite)
    lines = summary_lines(run_dir, metrics, results)
    log.info("%s", "\n".join(lines), extra=JOB_LOG)  # the terminal gets them from the driver, after W&B's lines
    if summary is not None:
        summary += lines
    return metrics


def _log_step(trainer: pl.Trainer, game: Any) -> int:
    """The run's last update, the unit of every logged value (from ``callback_metrics`` in a ddp_spawn parent)."""
    value = trainer.callback_metrics.get("run/log_step")
    return int(value) if value is not None else int(game.log_step)


def _epochs(trainer: pl.Trainer) -> int:
    """Epochs trained: from ``callback_metrics`` (which a ddp_spawn parent gets back from its rank zero), else
    from the trainer itself (a resumed run that had nothing left to train)."""
    value = trainer.callback_metrics.get("run/epochs")
    return int(value) if value is not None else int(trainer.current_epoch)


def _evaluate_best(
    cfg: DictConfig, trainer: pl.Trainer, game: Any, datamodule: Any, run_dir: Path, train_seconds: float
) -> dict[str, Any] | None:
    """The protocol on the reported checkpoint -> ``results.json``; None for a diverged generator (non-finite
    samples). Any other mistake the evaluation finds (e.g. too few points for a metric) is raised: it is not a
    diverged run."""
    epochs = _epochs(trainer)
    settings = eval_settings(cfg)
    ckpt = _checkpoint_to_evaluate(trainer, settings.checkpoint)
    meta: dict[str, Any] = {
        "checkpoint": ckpt,
        "epoch": epochs,
        "epochs_trained": epochs,
        "train_seconds": round(train_seconds, 1),
        "experiment": cfg.name,
        "overrides": task_overrides(),
        "update": cfg.game["update"],
        "run_dir": str(run_dir),
        "source_commit": source_commit(),
        "command": command_line("advnets-train", task_overrides()),
    }
    if ckpt:
        state = safe_load(ckpt)
        game.load_state_dict(state["state_dict"])
        meta["epoch"] = state["epoch"] + 1
    try:
        return evaluate_run(
            game.generator, datamodule, cfg.game.noise, settings, run_dir, meta, trainer.strategy.root_device
        )
    except DivergedSamples as err:  # report it, keep the run folder
        log.warning("evaluation skipped: %s", err)
        return None


def check_objective(cfg: DictConfig) -> registry.MetricSpec:
    """``cfg.objective`` is a registered validation metric whose monitor callback is on."""
    spec = registry.spec(str(cfg.objective))
    if not str(cfg.objective).startswith("val/"):
        raise UserError(f"objective={cfg.objective}; allowed: a validation metric, val/<name> (e.g. val/fid)")
    monitor = (cfg.get("callbacks") or {}).get(spec.logged_by or "")
    logged = monitor and monitor.get("every_n_epochs", 0) > 0 and spec.name in monitor.get("metrics", [spec.name])
    if not logged:
        raise UserError(
            f"objective={cfg.objective} is not logged during training: it needs callbacks.{spec.logged_by} on, "
            f"with every_n_epochs > 0 and {spec.name} in its metrics (e.g. callbacks.metric_monitor.every_n_epochs=5)"
        )
    return spec


def reported_score(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float], diverged: bool) -> float:
    """The objective's value at the checkpoint the run reports (the best one, or the last with
    eval.checkpoint=last), not its last monitored value; the registry's finite worst for a diverged run."""
    spec = registry.spec(str(cfg.objective))
    checkpoint = trainer.checkpoint_callback
    value = metrics.get(str(cfg.objective))
    reports_best = not cfg.get("eval") or cfg.eval.get("checkpoint", "best") == "best"
    best = metrics.get("run/best_score")  # handed back by rank zero (a ddp_spawn parent has no best_model_score)
    if reports_best and best is None and checkpoint is not None and checkpoint.best_model_score is not None:
        best = float(checkpoint.best_model_score)
    if reports_best and best is not None:
        value = best
    if diverged or value is None or not math.isfinite(value):
        return spec.failed
    return value


def _checkpoint_to_evaluate(trainer: pl.Trainer, which: str) -> str:
    """``best``: the monitored checkpoint callback's best file; ``last``: the file of the unmonitored one."""
    for callback in trainer.checkpoint_callbacks:
        if which == "best" and callback.monitor is not None and callback.best_model_path:
            return callback.best_model_path
        if which == "last" and callback.monitor is None and callback.dirpath:
            path = Path(callback.dirpath) / f"{callback.filename}{callback.FILE_EXTENSION}"
            if path.is_file():
                return str(path)
    return ""


def objective(metrics: dict[str, Any]) -> float:
    """What sweeps optimise: the reported checkpoint's score of ``objective`` (``reported_score``: finite, and the
    registry's worst value in the objective's direction for a diverged run)."""
    return float(metrics["objective_score"])


def run(cfg: DictConfig, summary: list[str]) -> Score:
    """One Hydra job: train, and always close the W&B run (one run per job); what the run says at its end goes to
    ``summary``, for the driver to print after W&B's closing lines.

    A job stopped by SIGTERM exits without a result (SystemExit), also when the stop surfaced as another error
    (SLURM kills the W&B service too, so the next log call fails): a launcher must not record a failed result
    for a job that SLURM reruns; the rerun resumes from ``last.ckpt``. A run stopped from a terminal (SIGINT,
    or SIGTERM where submitit does not handle it) says how to continue it (``stopped``).

    The run folder is built here, once (``RunFolder.of``); the Score says whether the job left it untouched."""
    quiet_third_party()
    folder = RunFolder.of(cfg)
    sigterms, restore_sigterm = note_sigterm()
    with stop_signals() as stops:
        try:
            return Score.of(objective(train(cfg, summary, folder)), untouched=folder.untouched)
        except BaseException as err:
            if not stops:
                if sigterms and isinstance(err, Exception):
                    raise SystemExit(f"advnets: job stopped by SIGTERM ({type(err).__name__}: {err})") from err
                if isinstance(err, Exception) and not isinstance(err, UserError) and _hydra_mode() == RunMode.RUN:
                    note_how_to_continue(err, folder.path.absolute(), cfg.trainer.get("max_epochs"))
                raise
        finally:
            try:
                folder.close()
            finally:
                restore_sigterm()
    return stopped(cfg, folder.path, stops[0])


def _hydra_mode() -> RunMode | None:
    """The mode of the Hydra job this process runs (RUN: a single run, MULTIRUN: a sweep's job), None outside one."""
    return HydraConfig.get().mode if HydraConfig.initialized() else None


def note_how_to_continue(err: Exception, run_dir: Path, max_epochs: Any) -> None:
    """A single run's failure ends its traceback with the command that continues it (``stops.failed_line``)."""
    line = failed_line(err, run_dir, max_epochs)
    if line is None:
        return
    if hasattr(err, "add_note"):  # Python >= 3.11: printed after the traceback, where one looks
        err.add_note(line)
    else:
        log.error("%s", line.removeprefix("advnets: "))


def stopped(cfg: DictConfig, run_dir: Path, signum: int) -> Score:
    """A run stopped by SIGINT or SIGTERM from a terminal: its one line (the run folder, the epoch its
    ``last.ckpt`` holds, the command that continues it), and exit status 130 or 143. A single run ends after
    Hydra's job-end hooks (its config record kept in the history, as of a start that trained): its Score carries
    the exit status for the entry point; a sweep stops here."""
    sweep = None
    if _hydra_mode() == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        sweep = (Path(hc.sweep.dir).absolute(), "optuna" in str(hc.sweeper.get("_target_", "")).lower())
    log.info("%s", stop_line(signum, run_dir.absolute(), cfg.trainer.get("max_epochs"), sweep))
    if sweep is not None:
        raise SystemExit(EXIT_STATUS[signum])
    return Score.of(float("nan"), exit_status=EXIT_STATUS[signum])
