"""User mistakes become one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from advnets.logs import TERMINAL, get_logger

EXIT_USER_ERROR = 2
_log = get_logger(__name__, rank_zero_only=False)  # a mistake is said by every process that meets it


class UserError(Exception):
    """A mistake in the user's input (config value, path, data file); the message names value and allowed."""


def fail(message: str) -> NoReturn:
    """End the program on a user mistake: its one ``advnets: error:`` line on stderr (never into a run folder's
    log, which a mistake leaves as it was) and exit status 2."""
    _log.error("%s", message, extra=TERMINAL)
    raise SystemExit(EXIT_USER_ERROR)


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``, also when a library wrapped it (Hydra's InstantiationException does)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _hydra_message(err: BaseException) -> str | None:
    """Hydra's own message for a config mistake (unknown option, bad override), folded onto one line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(err, HydraException | OmegaConfBaseException):
        return None
    parts: list[str] = []
    for line in str(err).splitlines():
        line = line.strip()
        if line.startswith("Config search path"):
            break
        if not line:
            continue
        if parts and parts[-1].endswith(":"):
            parts[-1] += f" {line}"
        elif parts and parts[-1].rsplit(":", 1)[0].startswith("Available options") and line.isidentifier():
            parts[-1] += f", {line}"
        else:
            parts.append(line)
    return "; ".join(parts)


def refused_submission(err: BaseException) -> str | None:
    """sbatch's refusal of a job (submitit raises it with sbatch's stderr), on one line; for a GPU request on
    a cluster that has none, what to pass instead."""
    import subprocess

    seen: BaseException | None = err
    while seen is not None:
        command = getattr(seen, "cmd", None)
        if isinstance(seen, subprocess.CalledProcessError) and command and Path(str(command[0])).name == "sbatch":
            said = " ".join(str(seen.stderr or seen.output or "").split()) or f"exit status {seen.returncode}"
            hint = ""
            if "gres" in said.lower():
                hint = "; this cluster offers no GPUs here: pass trainer=cpu (or a partition with GPUs)"
            return f"SLURM refused the job ({said}){hint}"
        seen = seen.__cause__ or seen.__context__
    return None


def one_line(err: BaseException) -> str | None:
    """A one-line message for a user mistake, or None for a bug (which keeps its traceback)."""
    user_error = find_user_error(err)
    if user_error is not None:
        return str(user_error)
    refused = refused_submission(err)
    if refused is not None:
        return refused
    hydra_message = _hydra_message(err)
    if hydra_message is not None:
        return hydra_message
    if isinstance(err, OSError) and err.filename:
        return f"cannot write {err.filename}: {err.strerror}"
    return None
