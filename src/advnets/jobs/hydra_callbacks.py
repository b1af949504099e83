"""Hydra callbacks: a mistake leaves no trace (a new folder removed, an old folder's recorded config restored),
a sweep's search space is checked against the schema before its first job, and a sweep ends by saying how many
of its jobs failed."""

from __future__ import annotations

import errno
import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from advnets.errors import UserError, fail, find_user_error, one_line
from advnets.internals import job_exception
from advnets.logs import JOB_LOG, TERMINAL, get_logger

log = get_logger(__name__)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def _entry_names(history: Path, label: str = "") -> Iterator[Path]:
    """Free names for a new history entry: ``<time><label>``, then ``<time>-2<label>``, ... (starts in one second)."""
    stamp = _stamp()
    for n in itertools.count(1):
        entry = history / f"{stamp}{f'-{n}' if n > 1 else ''}{label}"
        if not entry.exists():
            yield entry


def _move_to_history(folder: Path, history: Path, label: str = "") -> Path:
    """``folder`` renamed to a new entry of ``history``, never onto an entry another start made meanwhile."""
    history.mkdir(parents=True, exist_ok=True)
    for entry in _entry_names(history, label):
        try:
            folder.rename(entry)
            return entry
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise AssertionError("unreachable")


def _new_history_entry(history: Path) -> Path:
    """A new, empty entry of ``history``, claimed by creating it (``mkdir`` fails on a name already taken)."""
    history.mkdir(parents=True, exist_ok=True)
    for entry in _entry_names(history):
        try:
            entry.mkdir()
            return entry
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


class NewSweepFolders:
    """The sweep folder this process's multirun creates and the parents it creates, deepest first (recorded by
    ``ValidateSearchSpace`` when the sweep starts, forgotten when it ends). Hydra calls no hook on a sweep that
    raises, so the entry point (advnets.cli.entry), which catches the error, calls ``remove``."""

    def __init__(self) -> None:
        self.folders: list[Path] = []

    def remove(self) -> None:
        """After a sweep stopped by a mistake: the sweep folder it created goes, when no job in it got as far as a
        run (a job folder with ``.hydra/``), with the empty parents it created."""
        if not self.folders:
            return
        sweep = self.folders[0]
        if sweep.is_dir() and not list(sweep.glob("*/.hydra")):
            shutil.rmtree(sweep)
        for parent in self.folders[1:]:
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        self.folders = []


UNSTARTED_SWEEP = NewSweepFolders()


def _new_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    made, folder = [], folder.absolute()
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    return made


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
        self.entry: Path | None = None  # a multirun job's history entry for this start

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
        partial = stash.with_name(stash.name + ".partial")
        if partial.is_dir():  # a start killed while stashing: .hydra itself was not yet rewritten
            shutil.rmtree(partial)
        if stash.is_dir():  # left by a killed start: the record of the start before it
            _move_to_history(stash, self.hydra_dir / "history", "-before-a-killed-start")
        if (self.hydra_dir / "config.yaml").is_file():
            _copy_files(self.hydra_dir, partial)
            partial.rename(stash)  # whole or not at all: a kill in between leaves only the partial copy
            self.stash = stash

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        subdir = config.hydra.output_subdir
        if self.single_run or subdir is None:
            return
        hydra_dir = Path(str(config.hydra.runtime.output_dir)) / str(subdir)
        if (hydra_dir / "config.yaml").is_file():
            self.entry = _new_history_entry(hydra_dir / "history")
            _copy_files(hydra_dir, self.entry)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # a job that found its run folder finished returns a Score saying it left the folder as it was
        completed = job_return.status == JobStatus.COMPLETED
        untouched = completed and bool(getattr(job_return.return_value, "untouched", False))
        if self.entry is not None:
            if untouched:
                shutil.rmtree(self.entry, ignore_errors=True)
            self.entry = None
        if self.stash is None or self.hydra_dir is None or not self.stash.exists():
            return
        if job_return.status == JobStatus.FAILED or untouched:
            _copy_files(self.stash, self.hydra_dir)
            shutil.rmtree(self.stash)
        else:
            _move_to_history(self.stash, self.hydra_dir / "history")
        self.stash = None


class UserMistake(JobReturn):
    """A single run's return that raises its user mistake without Hydra's "Error executing job" line: the entry
    point (advnets.cli.entry) catches it and prints its one line."""

    @property  # type: ignore[override]
    def return_value(self) -> Any:
        if self.status == JobStatus.COMPLETED:
            return self._return_value
        raise self._return_value

    @return_value.setter
    def return_value(self, value: Any) -> None:
        self._return_value = value


class UserErrorsLeaveNoTrace(Callback):
    """A single run that stops on a user mistake: the folder Hydra created for it (holding only Hydra's record
    and log, the lock and the overrides record) is removed, and the mistake reaches the entry point, which prints
    its one line (instead of Hydra's extra "Error executing job" line: ``UserMistake``). List it before
    KeepPreviousRunConfig: job-end hooks run in reverse order, so this one runs after the config is restored."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.created: list[Path] = []  # the run folder and the parents Hydra creates for it, deepest first

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # hydra.run.dir reads ${now:...} and ${hydra:...}
        self.run_dir = Path(str(config.hydra.run.dir))
        self.created = _new_folders(self.run_dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.run_dir is None or job_return.status != JobStatus.FAILED:
            return
        raised = job_exception(job_return)
        error = find_user_error(raised) if raised is not None else None
        if error is None:
            return
        hydra_only = {str(config.hydra.output_subdir), f"{config.hydra.job.name}.log", ".lock", "overrides.json"}
        if self.created and self.run_dir.is_dir() and {p.name for p in self.run_dir.iterdir()} <= hydra_only:
            shutil.rmtree(self.run_dir)
            for parent in self.created[1:]:  # outputs/<name>/ too, when this job made it and it is empty
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        job_return.return_value = error
        job_return.__class__ = UserMistake


class SweepStudy(Callback):
    """An Optuna study's database (``hydra.sweeper.storage``, a URL or the ``url`` of an ``open_storage`` node).
    SQLite (``sqlite:///outputs/optuna.db``, one sweeper): its folder is made before the sweeper opens it (a sweep
    from a fresh working folder finds it); the sweeper refuses to start while another one runs on it
    (``study_storage.one_sweeper``) and fails the trials a stopped sweep left RUNNING. Any other
    database (PostgreSQL, several sweepers): given as a plain URL, it is opened with heartbeats all the same
    (advnets.jobs.study_storage). List it after validate_search_space: a refused sweep creates nothing."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from advnets.store.studies import heartbeat_node, is_sqlite, sqlite_file, storage_url

        node = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
        storage = storage_url(node) or ""
        if storage and not is_sqlite(storage) and isinstance(node, str):
            with read_write(config.hydra), open_dict(config.hydra):  # the sweeper is built from it next
                config.hydra.sweeper.storage = heartbeat_node(storage)
        path = sqlite_file(storage)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


class ValidateSearchSpace(Callback):
    """Before a sweep's first job: the config of every job it will run (advnets.jobs.search_space) is composed
    and checked, first against the schema's plain rules (nothing heavy imported), then in full; a sweep of SLURM
    jobs also against what it asks of SLURM, and that against the partition (advnets.jobs.slurm_request).

    Hydra turns an exception raised by a callback into a warning, so a mistake ends the sweep here with its one
    line and exit status 2 (SystemExit passes through)."""

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from advnets.jobs import slurm_request
        from advnets.jobs.search_space import check_jobs
        from advnets.schema import EVALUATE, TRAIN, validate

        HydraConfig.instance().set_config(config)
        UNSTARTED_SWEEP.folders = _new_folders(Path(str(config.hydra.sweep.dir)))
        train = config_name == "train"
        rules = TRAIN if train else EVALUATE

        def plain_rules(cfg: DictConfig) -> None:
            validate(cfg, rules, targets=False)

        def in_full(cfg: DictConfig) -> None:
            if train:
                from advnets.training import check_config

                check_config(cfg)
            else:
                validate(cfg, rules)

        try:
            checks = [plain_rules, in_full]
            if train and slurm_request.is_slurm(config):
                request = slurm_request.request_of(config)
                checks.append(slurm_request.job_check(request))
            check_jobs(config, checks)
            if train and slurm_request.is_slurm(config):
                slurm_request.check_cluster(request)
        except UserError as err:
            fail(str(err))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        UNSTARTED_SWEEP.folders = []  # a sweep that ended has nothing to remove


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
EXIT_JOBS_FAILED = 1
_sweep: dict[str, Any] = {"carry_on": False, "failed": {}}  # this multirun, in the process sweeping


class FailedJob(JobReturn):
    """A failed job's return that says nothing on its own: its error line was logged when the job ended (and the
    sweep's summary names its folder), so Hydra's "Error executing job with overrides" line is not written.
    Under Hydra's basic sweeper, which would stop at the first failure, it gives None and the sweep carries on
    to its summary; under any other sweeper (Optuna) it raises the job's exception, for the sweeper to count."""

    @property  # type: ignore[override]
    def return_value(self) -> Any:
        if self.status == JobStatus.COMPLETED:
            return self._return_value
        _sweep["failed"][self.working_dir or "?"] = self._return_value
        if _sweep["carry_on"]:
            return None
        raise self._return_value

    @return_value.setter
    def return_value(self, value: Any) -> None:
        self._return_value = value


def _error_line(err: BaseException | None) -> str:
    if err is None:
        return "failed"
    return one_line(err) or f"{type(err).__name__}: {err}"


class SweepFailures(Callback):
    """A multirun job that fails logs its error line (in its own ``train.log`` too, with the traceback of an
    error that is no user mistake) and hands Hydra a ``FailedJob``; the sweep ends with one line, ``N of M jobs
    failed: <folders>``: an error (exit status 1) where the sweep ran every job to say so (Hydra's basic
    sweeper), a warning where the sweeper counts failures itself and carries on (an Optuna search)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
        # the sweep folder is read at the end: its path may interpolate HydraConfig, not set yet at this hook
        _sweep.update(carry_on=sweeper == BASIC_SWEEPER, failed={})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or job_return.status != JobStatus.FAILED:
            return
        err = job_exception(job_return)
        folder = str(config.hydra.runtime.output_dir)
        line = f"job {config.hydra.job.num} ({folder}) failed: {_error_line(err)}"
        log.error("%s", line, extra=TERMINAL)
        bug = err is not None and one_line(err) is None
        log.error("%s", line, exc_info=err if bug else None, extra=JOB_LOG)
        job_return.working_dir = folder
        job_return.__class__ = FailedJob

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = sorted(_sweep["failed"])
        if not failed:
            return
        sweep = Path(str(config.hydra.sweep.dir))
        jobs = len(list(sweep.glob("*/.hydra"))) if isinstance(sweep, Path) and sweep.is_dir() else len(failed)
        mistakes = {str(find_user_error(err)) for err in _sweep["failed"].values() if find_user_error(err)}
        every_job_one_mistake = len(failed) >= jobs and len(mistakes) == 1
        if _sweep["carry_on"] and every_job_one_mistake and all(map(find_user_error, _sweep["failed"].values())):
            fail(mistakes.pop())  # every job made the same mistake: it is the sweep's, one line and exit 2
        line = failed_jobs_line(failed, jobs)
        if _sweep["carry_on"]:
            log.error("%s", line, extra=TERMINAL)
            raise SystemExit(EXIT_JOBS_FAILED)
        log.warning("%s", line, extra=TERMINAL)


def failed_jobs_line(failed: list[str], jobs: int) -> str:
    """The line every sweep with failed jobs ends with: ``N of M jobs failed: FOLDERS``."""
    return f"{len(failed)} of {max(jobs, len(failed))} jobs failed: {', '.join(failed)}"
