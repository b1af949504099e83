"""advnets' log: one logger per module (``log = get_logger(__name__)``) under ``advnets``, with levels, rank-zero
aware (the model: lightning-hydra-template's ``RankedLogger``).

Every record goes to the terminal as one line of its own, ``advnets: ...`` on stdout, ``advnets: warning: ...``
and ``advnets: error: ...`` on stderr, and, in a Hydra job, into the job's own log file (``<run>/train.log``:
the file handlers that Hydra's ``job_logging`` gives the root logger, in their format). A record logged with
``extra=TERMINAL`` stays out of that file (a job that must leave its run folder exactly as it is), one with
``extra=JOB_LOG`` off the terminal (what a driver prints itself).

A command's own output (a table, a path, its help, a run's closing summary) is no log record: ``output`` writes
it as it is, and no level silences it. No line carries colour codes unless it goes to a terminal (Optuna's own
lines are plain off a terminal since Optuna 4).

Levels: ``ADVNETS_LOG_LEVEL`` (DEBUG, INFO, WARNING or ERROR; INFO by default), or Hydra's
``hydra.verbose=advnets`` for DEBUG. Under DDP only rank zero logs, unless a logger is made with
``rank_zero_only=False`` (its records from other ranks then name the rank).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, TextIO

ROOT = "advnets"
TERMINAL: Mapping[str, bool] = {"terminal_only": True}
"""``extra=`` of a record for the terminal alone."""
JOB_LOG: Mapping[str, bool] = {"job_log_only": True}
"""``extra=`` of a record for the job's log file alone."""
LEVEL_VARIABLE = "ADVNETS_LOG_LEVEL"


def current_rank() -> int:
    """This process's global rank: Lightning's ``rank_zero_only.rank`` once Lightning is loaded (its strategies
    set it in every process they start), else the launcher's environment, as Lightning reads it; 0 alone."""
    fabric = sys.modules.get("lightning_fabric.utilities.rank_zero")
    rank = getattr(getattr(fabric, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def _prefix(level: int) -> str:
    if level >= logging.ERROR:
        return "advnets: error: "
    if level >= logging.WARNING:
        return "advnets: warning: "
    return "advnets: " if level >= logging.INFO else "advnets: debug: "


class TerminalHandler(logging.Handler):
    """One line per record: below WARNING on stdout, else on stderr (the streams of the moment, so a captured
    or redirected stream gets it), prefixed ``advnets:`` and the level's name from WARNING on."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "job_log_only", False):
            return
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(f"{_prefix(record.levelno)}{record.getMessage()}\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class JobLogHandler(logging.Handler):
    """Hands each record to the root logger's file handlers: Hydra's per-job log (``<run>/<job name>.log``) in a
    Hydra job, nothing where the root logger has none."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "terminal_only", False):
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)


LEVELS = {name: logging.getLevelName(name) for name in ("DEBUG", "INFO", "WARNING", "ERROR")}
"""The levels ``ADVNETS_LOG_LEVEL`` may name; none above ERROR, so a mistake's ``advnets: error:`` line is always
said."""


def _level() -> int:
    return LEVELS.get(os.environ.get(LEVEL_VARIABLE, "INFO").strip().upper(), logging.INFO)


def _configure() -> None:
    """The ``advnets`` logger's handlers and level, once per process; it does not propagate, so the root
    logger's own terminal handler (Hydra's) does not print its records a second time."""
    logger = logging.getLogger(ROOT)
    if any(isinstance(h, TerminalHandler) for h in logger.handlers):
        return
    logger.addHandler(TerminalHandler())
    logger.addHandler(JobLogHandler())
    logger.propagate = False
    logger.setLevel(_level())
    name = os.environ.get(LEVEL_VARIABLE)
    if name and name.strip().upper() not in LEVELS:
        logger.warning("%s=%s; allowed: %s (INFO used)", LEVEL_VARIABLE, name, ", ".join(LEVELS))


class RankedLogger(logging.LoggerAdapter):
    """A module's logger that logs on rank zero only (``rank_zero_only=True``), or on every rank, or (``rank=N``
    in a call) on one rank; records from a rank other than zero are prefixed ``[rank N]``."""

    def __init__(self, name: str, rank_zero_only: bool = True) -> None:
        super().__init__(logging.getLogger(name), {})
        self.rank_zero_only = rank_zero_only

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs  # the caller's extra= kept (LoggerAdapter's own would replace it)

    def log(self, level: int, msg: Any, *args: Any, rank: int | None = None, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        here = current_rank()
        if (self.rank_zero_only and here != 0) or (rank is not None and rank != here):
            return
        if here != 0:
            msg = f"[rank {here}] {msg}"
        kwargs.setdefault("stacklevel", 3)  # the caller's line, not this adapter's
        self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str, rank_zero_only: bool = True) -> RankedLogger:
    """The logger of module ``name`` (``__name__``), under ``advnets``."""
    _configure()
    return RankedLogger(name if name == ROOT or name.startswith(f"{ROOT}.") else f"{ROOT}.{name}", rank_zero_only)


def output(text: str, end: str = "\n", stream: TextIO | None = None) -> None:
    """A command's own output, as it is, on stdout (or ``stream``): what the user asked the command for."""
    stream = stream or sys.stdout
    stream.write(f"{text}{end}")
    stream.flush()


class _DropLightningTips(logging.Filter):
    """Lightning's advertisement for its cloud logger, printed on every run, is not about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_DROP_LIGHTNING_TIPS = _DropLightningTips()  # one instance: added once however often a process runs a job


def quiet_third_party() -> None:
    """Keep a normal run's output to what concerns the run: no library notices that ask nothing of the user."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DROP_LIGHTNING_TIPS)
    # Lightning 2.6's own use of a torch API that torch deprecated; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # on a machine with SLURM's tools, a run started without srun is a local run by choice (SLURM runs go
    # through hydra/launcher=slurm, which starts them with srun)
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
