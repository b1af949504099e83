"""User mistakes become one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from advnets.logs import TERMINAL, get_logger

EXIT_USER_ERROR = 2
_log = get_logger(__name__, rank_zero_only=False)  # a mistake is said by every process that meets it


class UserError(Exception):
    """A mistake in the user's input (config value, path, data file); the message names value and allowed."""


_deferred: list[UserError] = []
_exit_status: list[int] = []


def defer_exit(status: int) -> None:
    """The exit status of a run that stopped on a signal, for the CLI wrapper to exit with once Hydra's job-end
    hooks have run (130: SIGINT, 143: SIGTERM)."""
    _exit_status.append(status)


def defer_user_error(err: UserError) -> None:
    """A mistake the CLI wrapper reports after Hydra returns (see hydra_callbacks.UserErrorsLeaveNoTrace)."""
    _deferred.append(err)


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


def _unknown_override(err: BaseException, config_name: str | None) -> str | None:
    """Hydra's "Could not override 'KEY'" for a key that is not in the config: the nearest known keys (the
    config composed again without that override), and the ``+KEY`` hint only when no known key is close."""
    found = re.search(r"Could not override '([^']+)'", str(err))
    if found is None or config_name is None:
        return None
    from advnets.schema import did_you_mean

    key = found.group(1)
    given = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    value = next((a.split("=", 1)[1] for a in given if a.split("=", 1)[0] == key), "VALUE")
    hint = did_you_mean(key, _config_keys(config_name, [a for a in given if a.split("=", 1)[0] != key]))
    if hint:
        return f"unknown key {key}{hint}"
    return f"unknown key {key}: not in the config (to add a new key: +{key}={value})"


def _config_keys(config_name: str, overrides: list[str]) -> list[str]:
    """The dotted keys of the config composed with ``overrides`` (or with none, if they do not compose)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from advnets import CONF_DIR
    from advnets.schema import dotted_keys

    plain = [o for o in overrides if "," not in o and "(" not in o]  # a sweep's values do not compose as one job
    for attempt in (plain, []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = OmegaConf.to_container(compose(config_name, overrides=attempt), resolve=False)
        except Exception:
            continue
        finally:
            GlobalHydra.instance().clear()
        cfg.pop("hydra", None)  # type: ignore[union-attr]
        return dotted_keys(cfg)
    return []


def _refused_submission(err: BaseException) -> str | None:
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


def one_line(err: BaseException, config_name: str | None = None) -> str | None:
    """A one-line message for a user mistake, or None for a bug (which keeps its traceback)."""
    user_error = find_user_error(err)
    if user_error is not None:
        return str(user_error)
    refused = _refused_submission(err)
    if refused is not None:
        return refused
    unknown = _unknown_override(err, config_name)
    if unknown is not None:
        return unknown
    hydra_message = _hydra_message(err)
    if hydra_message is not None:
        return hydra_message
    if isinstance(err, OSError) and err.filename:
        return f"cannot write {err.filename}: {err.strerror}"
    return None


def cli(hydra_main: Callable[[], Any], config_name: str | None = None) -> Callable[[], None]:
    """Wrap a ``@hydra.main`` entry point: Hydra re-raises (HYDRA_FULL_ERROR), mistakes become one line
    (``config_name``: the entry point's config, for the nearest keys to a misspelt one)."""

    @functools.wraps(hydra_main)
    def entry() -> None:
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
        try:
            hydra_main()
        except KeyboardInterrupt:  # Ctrl-C before or after a run (a run stopped by it says so itself)
            raise SystemExit(130) from None
        except Exception as err:
            message = one_line(err, config_name)
            if message is None:
                raise
            from advnets.jobs.hydra_callbacks import remove_unstarted_sweep

            remove_unstarted_sweep()
            fail(message)
        if _deferred:
            fail(str(_deferred.pop()))
        if _exit_status:
            raise SystemExit(_exit_status.pop())

    return entry
