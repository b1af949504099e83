"""A run stopped from a terminal (Ctrl-C: SIGINT; ``kill``: SIGTERM) ends with one line naming its run folder
and the command that continues it, and exit status 130 (SIGINT) or 143 (SIGTERM). The same command run again
beside an unfinished run says how to continue that one.

Under SLURM, submitit handles SIGTERM (a requeue, a preemption): that path is ``note_sigterm`` and
``training.fit_or_stop``, untouched here."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advnets.logs import get_logger

log = get_logger(__name__)
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""A shell's status of a process ended by the signal: 128 + its number."""
PROGRAM = "advnets-train"


class _DropInterruptNotices(logging.Filter):
    """Lightning's own lines about a stop ("Detected KeyboardInterrupt, attempting graceful shutdown",
    "Received SIGTERM"): the run's one line says what happened and what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return "Detected KeyboardInterrupt" not in message and "Received SIGTERM" not in message


_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.trainer.connectors.signal_connector")


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Within: SIGINT, and SIGTERM where nothing else handles it (a run from a terminal, not submitit's job),
    stop the run as Ctrl-C does (KeyboardInterrupt, which Lightning shuts training down on); the signals seen
    are listed. Signals after the first are only noted, so the run's cleanup (closing W&B, the lock) finishes."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def stop(signum: int, frame: Any) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(signum) is default:
            previous[signum] = signal.signal(signum, stop)
    notices = _DropInterruptNotices()
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).addFilter(notices)
    try:
        yield seen
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for name in _LIGHTNING_LOGGERS:
            logging.getLogger(name).removeFilter(notices)


def _key(argument: str) -> str:
    return argument.split("=", 1)[0].lstrip("+~")


def continue_command(run_dir: Path, argv: list[str] | None = None, has_checkpoint: bool = True) -> str:
    """The command that continues the single run in ``run_dir``: this command's arguments (``argv``, default
    ``sys.argv[1:]``) with ``hydra.run.dir`` set to it, and without ``ckpt_path`` where the folder holds a
    checkpoint of its own (a continued run resumes from that, not from the checkpoint it started from)."""
    drop = {"hydra.run.dir", *(["ckpt_path"] if has_checkpoint else [])}
    args = [a for a in (sys.argv[1:] if argv is None else argv) if _key(a) not in drop]
    return shlex.join([PROGRAM, *args, f"hydra.run.dir={run_dir}"])


def continue_sweep_command(sweep_dir: Path, optuna: bool) -> str:
    """The command that continues a stopped sweep: the same command in the same sweep folder (its finished jobs
    have nothing to do, its stopped ones resume); an Optuna search continues its study from the same command."""
    args = list(sys.argv[1:])
    if not optuna:
        args = [a for a in args if _key(a) != "hydra.sweep.dir"] + [f"hydra.sweep.dir={sweep_dir}"]
    return shlex.join([PROGRAM, *args])


def saved_epoch(run_dir: Path) -> int | None:
    """Epochs trained as the run folder's ``last.ckpt`` holds them (what a continued run starts after), or None
    where it has none that loads."""
    from advnets.store.checkpoints import safe_load

    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:
        return int(safe_load(last)["epoch"]) + 1
    except Exception:  # a file a killed writer left: the continued run says which checkpoint it takes
        return None


def _progress(epoch: int | None, max_epochs: Any) -> str:
    total = f" of {max_epochs}" if isinstance(max_epochs, int) and max_epochs > 0 else ""
    return f"after epoch {epoch}{total}" if epoch else "before its first epoch ended"


def stop_line(signum: int, run_dir: Path, max_epochs: Any, sweep: tuple[Path, bool] | None = None) -> str:
    """What a stopped run says: the signal, where it stopped, and the command that continues it (``sweep``: the
    sweep folder of a multirun job, and whether it is an Optuna search)."""
    name = signal.Signals(signum).name
    epoch = saved_epoch(run_dir)
    where = f"run {run_dir} stopped by {name} {_progress(epoch, max_epochs)}"
    if sweep is not None:
        return f"{where}; continue the sweep with: {continue_sweep_command(*sweep)}"
    return f"{where}; continue it with: {continue_command(run_dir, has_checkpoint=epoch is not None)}"


def failed_line(err: BaseException, run_dir: Path, max_epochs: Any) -> str | None:
    """What a single run that failed on an error says after its traceback, where its folder holds a checkpoint:
    where it stopped, and the command that continues it once the cause is fixed; None without a checkpoint."""
    epoch = saved_epoch(run_dir)
    if epoch is None:
        return None
    return (
        f"advnets: run {run_dir} failed {_progress(epoch, max_epochs)} ({type(err).__name__}); its checkpoints are "
        f"kept: once the cause is fixed, continue it with: {continue_command(run_dir)}"
    )


def _in_use(folder: Path) -> bool:
    """Another job holds the run folder's lock (it is training there now, not stopped)."""
    path = folder / ".lock"
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock
    return False


def unfinished_runs(run_dir: Path, overrides: list[str]) -> list[Path]:
    """Run folders beside ``run_dir`` (in ``outputs/<name>/``) started with these ``overrides`` (their
    ``overrides.json``) whose training never ended (no ``metrics.json``) and that hold a ``last.ckpt`` to
    continue from, newest first."""
    parent = run_dir.parent
    if not parent.is_dir():
        return []
    found = []
    for folder in parent.iterdir():
        record = folder / "overrides.json"
        if folder == run_dir or not record.is_file() or (folder / "metrics.json").exists():
            continue
        if not (folder / "checkpoints" / "last.ckpt").is_file() or _in_use(folder):
            continue
        try:
            same = json.loads(record.read_text()) == overrides
        except (OSError, ValueError):
            continue
        if same:
            found.append(folder)
    return sorted(found, key=lambda f: (f / "checkpoints" / "last.ckpt").stat().st_mtime, reverse=True)


def say_unfinished(run_dir: Path, overrides: list[str], max_epochs: Any) -> None:
    """One line before a plain command starts a new run beside an unfinished one with the same overrides: which
    folder, and the command that continues it."""
    found = unfinished_runs(run_dir, overrides)
    if not found:
        return
    newest = found[0]
    more = f" (and {len(found) - 1} older)" if len(found) > 1 else ""
    log.info(
        "an unfinished run of this command is in %s%s, %s; continue it with: %s; starting a new run in %s",
        newest,
        more,
        _progress(saved_epoch(newest), max_epochs),
        continue_command(newest),
        run_dir,
    )


def note_sigterm() -> tuple[list[int], Callable[[], None]]:
    """Under submitit (whose SIGTERM handler only logs), also note a SIGTERM: SLURM sends it to every process
    of a job it requeues, preempts or cancels. Returns (signals seen, a function restoring the old handler)."""
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    if not (callable(previous) and threading.current_thread() is threading.main_thread()):
        return seen, lambda: None

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    return seen, lambda: signal.signal(signal.SIGTERM, previous)
