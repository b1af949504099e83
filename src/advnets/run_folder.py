"""The run folder of a job (``RunFolder``, built once from the config when the job starts): its lock, whether
it is finished or resumes (explicitly or after a requeue), the record of the overrides it was started with, and the
loggers tied to it and to the Hydra job."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from advnets.errors import UserError
from advnets.internals import wandb_init_arguments
from advnets.logs import TERMINAL, get_logger
from advnets.store import atomic
from advnets.store.checkpoints import check_complete, check_resumable
from advnets.store.loggers import close_tensorboard
from advnets.store.records import flat_keys

log = get_logger(__name__)


SAME_RUN_IGNORES = ("ckpt_path", "allow_config_change")
"""Overrides that do not change what a run folder holds: a rerun may add or change them freely."""


def _recorded_epochs(record: Path) -> str:
    """The epochs a run's ``metrics.json`` says it trained, or "unknown"."""
    try:
        return str(int(json.loads(record.read_text())["run/epochs"]))
    except (ValueError, KeyError, TypeError):
        return "unknown"


def _in_use_error(run_dir: Path, fd: int) -> UserError:
    holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
    return UserError(
        f"run folder {run_dir} is in use by another job (pid {holder}); wait for it, or use another hydra.run.dir"
    )


class RunFolder:
    """A job's run folder (``cfg.paths.output_dir``) and what the job was given about it: ``ckpt_path`` (a
    checkpoint to start from), ``allow_config_change`` and the logger configs. Built once, when the job starts
    (``of``); it owns the folder's lock (``start`` takes it, ``close`` frees it), the decision to resume
    (``resume_from``, ``resuming``), the overrides record (``overrides.json``) and the job's loggers."""

    def __init__(
        self,
        path: Path,
        ckpt_path: str | None = None,
        allow_config_change: bool = False,
        logger_cfgs: DictConfig | None = None,
    ) -> None:
        self.path = path
        self.ckpt_path = ckpt_path
        self.allow_config_change = allow_config_change
        self.logger_cfgs = logger_cfgs  # cfg.logger, read when the loggers are built
        self.resuming = False  # continues the folder's own checkpoints (set by ``start``)
        self.untouched = False  # holds this finished run, left as it was (set by ``finished``)
        self._lock: int | None = None  # the file descriptor of the folder's lock, while held

    @classmethod
    def of(cls, cfg: DictConfig) -> RunFolder:
        """The run folder of the job ``cfg`` configures."""
        return cls(
            Path(cfg.paths.output_dir),
            ckpt_path=str(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
            allow_config_change=bool(cfg.get("allow_config_change")),
            logger_cfgs=cfg.get("logger"),
        )

    def finished(self) -> dict[str, Any] | None:
        """The recorded metrics of a folder whose training already ended (``metrics.json``) with this job's
        overrides, else None. Such a folder is left exactly as it is (``untouched``): the same command run again,
        or a requeue that lands after the end, has nothing to do. Other overrides are for ``start`` to judge
        (``allow_config_change=true`` continues the run, e.g. for more epochs)."""
        record = self.path / "metrics.json"
        if self.ckpt_path or not record.is_file():
            return None
        self.check_not_in_use()  # a job still at work on it (e.g. continuing it) is not finished
        started_with = self.path / "overrides.json"
        if started_with.is_file() and json.loads(started_with.read_text()) != comparable_overrides():
            return None
        metrics = json.loads(record.read_text())
        if not isinstance(metrics, dict) or not isinstance(metrics.get("objective_score"), int | float):
            return None  # not a record this version wrote: train again rather than guess
        self.untouched = True
        what = "results.json" if (self.path / "results.json").is_file() else "metrics.json"
        log.info(
            "run %s is finished (%s); nothing to do", self.path, what, extra=TERMINAL
        )  # the folder stays untouched
        return metrics

    def start(self) -> str | None:
        """Claim the folder for this job: writable, locked, the checkpoint to resume from decided
        (``resume_from``) and the overrides checked against and written to its record; that checkpoint, or None
        for a fresh start."""
        self.check_writable()
        self.lock()
        ckpt_path = self.resume_from()
        self.resuming = bool(ckpt_path) and not self.ckpt_path
        self.check_same_overrides()
        self.set_aside_previous_end()  # before the overrides are recorded: then no rank reads an old end as this one
        if rank_zero_only.rank == 0:
            atomic.write_json(self.path / "overrides.json", comparable_overrides())
        return ckpt_path

    def set_aside_previous_end(self) -> None:
        """A folder that trains again after an end (continued for more epochs, or started over) is not finished
        until its next end: the records of the earlier end, ``metrics.json`` and ``results.json``, are kept as
        ``metrics.epoch<N>.json`` and ``results.epoch<N>.json`` (N: the epochs they record), so that neither the
        same command again nor ``advnets-compare`` takes them for this run's end."""
        record = self.path / "metrics.json"
        if rank_zero_only.rank != 0 or not record.is_file():
            return
        epochs = _recorded_epochs(record)
        for name in ("metrics", "results"):
            path = self.path / f"{name}.json"
            if path.is_file():
                os.replace(path, self.path / f"{name}.epoch{epochs}.json")
        log.info(
            "run %s continues after its end at epoch %s: that end's records are kept under its epoch", self.path, epochs
        )

    def check_writable(self) -> None:
        """Fail early, before anything is trained, if the run folder cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise UserError(f"output folder {self.path} is not writable ({err.strerror})") from None

    def lock(self) -> None:
        """One job per run folder: an exclusive ``flock`` on ``<run>/.lock``, held until ``release`` or the process
        ends (a killed job frees it). Rank zero takes it (other DDP ranks share their job's folder) and clears the
        temporaries a killed writer left."""
        if rank_zero_only.rank != 0:
            return
        self.release()
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _in_use_error(self.path, fd)
            os.close(fd)
            raise error from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd
        atomic.remove_stale_temporaries(self.path)  # the lock holder alone: no other writer can be mid-write

    def check_not_in_use(self) -> None:
        """The folder's lock is free (else the one-line error ``lock`` gives), probed without writing anything:
        what a job that may find nothing to do checks first."""
        path = self.path / ".lock"
        if rank_zero_only.rank != 0 or not path.is_file():
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use_error(self.path, fd) from None
        finally:
            os.close(fd)  # releases the probe's lock

    def release(self) -> None:
        """Free the folder's lock, if this job holds it."""
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def resume_from(self) -> str | None:
        """``ckpt_path`` if given; else the folder's own ``last.ckpt`` (a requeued job); else a fresh start.

        A given ``ckpt_path`` must be complete and safe to load. The folder's own ``last.ckpt``, if damaged, gives
        way to the newest checkpoint of the folder that is sound, with a one-line warning."""
        if self.ckpt_path:
            return str(check_resumable(Path(self.ckpt_path)))
        folder = self.path / "checkpoints"
        last = folder / "last.ckpt"
        found = sorted(folder.glob("*.ckpt"), key=lambda p: (p != last, -p.stat().st_mtime)) if folder.is_dir() else []
        damaged: list[str] = []
        for ckpt in found:
            try:
                check_complete(ckpt)
            except UserError:
                damaged.append(ckpt.name)
                continue
            check_resumable(ckpt)  # complete but holding more than weights: refused, never skipped silently
            if damaged:
                log.warning("damaged %s in %s; resuming from %s instead", ", ".join(damaged), folder, ckpt.name)
            return str(ckpt)
        if damaged:
            log.warning("damaged %s in %s and no sound checkpoint; starting afresh", ", ".join(damaged), folder)
        return None

    def check_same_overrides(self) -> None:
        """A rerun that continues the folder must have the overrides it was started with
        (``allow_config_change=true`` continues anyway), as recorded in ``<run>/overrides.json`` (``start`` records
        this job's)."""
        record = self.path / "overrides.json"
        current = comparable_overrides()
        if self.resuming and record.exists() and not self.allow_config_change:
            previous = json.loads(record.read_text())
            if previous != current:
                added = [o for o in current if o not in previous]
                dropped = [o for o in previous if o not in current]
                change = ", ".join([f"+{o}" for o in added] + [f"-{o}" for o in dropped])
                raise UserError(
                    f"run folder {self.path} was started with other overrides ({change}); continuing it would mix "
                    "two configs: use another hydra.run.dir, or pass allow_config_change=true to continue it anyway"
                )

    def loggers(self, job_type: str | None = None) -> list[Logger]:
        """The job's loggers, tied to this folder (``build_loggers``)."""
        return build_loggers(list((self.logger_cfgs or {}).values()), self.path, job_type)

    def close(self) -> None:
        """The end of the job: its W&B run and TensorBoard files closed (``finish_wandb``), the lock freed."""
        try:
            finish_wandb()
        finally:
            self.release()


def comparable_overrides() -> list[str]:
    """This job's overrides as ``overrides.json`` records them (those in SAME_RUN_IGNORES left out), sorted."""
    return sorted(o for o in task_overrides() if o.split("=")[0].lstrip("+~") not in SAME_RUN_IGNORES)


def plain_single_run() -> bool:
    """A single run (not a sweep's job) in the folder Hydra named for it (no ``hydra.run.dir`` given)."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    given = any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in hc.overrides.hydra)
    return hc.mode == RunMode.RUN and not given


def task_overrides() -> list[str]:
    """This job's command-line overrides (without Hydra's own), e.g. ['seed=2', 'game.update=alternating']."""
    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(("hydra.", "hydra/"))]


def _job_identity() -> tuple[str | None, str | None, list[str]]:
    """(group, name, tags) for W&B from the Hydra job: a sweep's jobs share a group; overrides name them."""
    if not HydraConfig.initialized():
        return None, None, []
    hc = HydraConfig.get()
    overrides = task_overrides()
    if hc.mode != RunMode.MULTIRUN:
        return None, None, overrides
    group = f"{hc.job.name}:{Path(hc.sweep.dir).name}"
    return group, ",".join(overrides) or f"job{hc.job.num}", overrides


def stable_wandb_id(run_dir: Path) -> str:
    """The W&B run id of this run folder, created once, so a resumed or requeued job continues the same run."""
    path = run_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        atomic.write_text(path, run_id + "\n")
    return run_id


class _NewExperimentNotice(logging.Filter):
    """Lightning's warning that the MLflow experiment is new, which it is in every run folder's own store."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Experiment with name")


def mlflow_logger(logger_cfg: DictConfig, run_dir: Path) -> Logger:
    """An MLFlowLogger that continues this run folder's MLflow run (its id kept in ``mlflow_id.txt``), so a
    resumed or requeued job, and a ddp_spawn parent logging the evaluation, add to one run. MLflow's usage
    telemetry is off unless asked for (MLFLOW_DISABLE_TELEMETRY=false): the store is local, nothing goes out."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"
    logging.getLogger("pytorch_lightning.loggers.mlflow").addFilter(_NewExperimentNotice())
    path = run_dir / "mlflow_id.txt"
    run_id = path.read_text().strip() if path.is_file() else None
    logger = instantiate(logger_cfg, run_id=run_id)
    if run_id is None and rank_zero_only.rank == 0:
        atomic.write_text(path, f"{logger.run_id}\n")  # reading run_id creates the run
    if run_id is not None:
        _log_new_params_only(logger)
    return logger


def _log_new_params_only(logger: Any) -> None:
    """A continued MLflow run keeps its parameters as first logged (MLflow refuses to change one): a job that
    continues it with another config (allow_config_change=true) adds its new keys only; the run folder's
    ``.hydra/history/`` keeps the config of every start."""
    log_hyperparams = logger.log_hyperparams

    def log_new(params: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if rank_zero_only.rank != 0:
            return
        known = logger.experiment.get_run(logger.run_id).data.params
        log_hyperparams({k: v for k, v in flat_keys(params, sep="/").items() if k not in known}, *args, **kwargs)

    logger.log_hyperparams = log_new


QUIET_SETTINGS = {"quiet": True}
"""W&B's settings where the logger's config gives none: no run history or summary printed at the end of every
run (the numbers are in the run's W&B files, and the run's own closing lines say what it scored); W&B's warnings
and errors are still shown."""


def build_loggers(logger_cfgs: list[DictConfig], run_dir: Path, job_type: str | None = None) -> list[Logger]:
    """Loggers from ``logger_cfgs`` (``cfg.logger``'s); W&B gets the run folder's stable run id and the sweep's
    group, name and tags (and ``job_type`` when given: ``eval`` for advnets-eval); MLflow continues the run
    folder's run."""
    loggers: list[Logger] = []
    for logger_cfg in logger_cfgs:
        target = str(logger_cfg.get("_target_", ""))
        if target.endswith("MLFlowLogger"):
            loggers.append(mlflow_logger(logger_cfg, run_dir))
            continue
        if not target.endswith("WandbLogger"):
            loggers.append(instantiate(logger_cfg))
            continue
        group, name, tags = _job_identity()
        os.environ["WANDB_DIR"] = str(run_dir)  # spawned DDP ranks log images here too, not into ./wandb
        extra = {
            "id": stable_wandb_id(run_dir),
            "resume": "allow",
            "group": logger_cfg.get("group") or group,
            "name": name or logger_cfg.get("name"),
            "tags": list(logger_cfg.get("tags") or []) + [t[:64] for t in tags[:20]],
            **({"job_type": job_type} if job_type else {}),
        }
        logger: WandbLogger = instantiate(logger_cfg, **extra)
        init = wandb_init_arguments(logger)
        init.pop("anonymous", None)  # Lightning always passes anonymous=None, which wandb >= 0.19 warns about
        init.setdefault("settings", dict(QUIET_SETTINGS))
        loggers.append(logger)
    return loggers


def finish_wandb() -> None:
    """Close this job's W&B run (one run per job); a W&B service killed with the job must not mask its outcome.
    The job's TensorBoard event files, kept open past the end of training for the test values, close too.

    Nothing to do (and nothing imported) where the job never imported wandb, e.g. under ``logger=csv``."""
    close_tensorboard()
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    try:
        if getattr(wandb, "run", None) is not None:
            wandb.finish()
    except Exception as err:
        log.warning("could not close the W&B run cleanly (%s: %s)", type(err).__name__, err)
