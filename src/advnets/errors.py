"""User mistakes become one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input (config value, path, data file); the message names value and allowed."""


_deferred: list[UserError] = []


def defer_user_error(err: UserError) -> None:
    """A mistake the CLI wrapper reports after Hydra returns (see hydra_callbacks.UserErrorsLeaveNoTrace)."""
    _deferred.append(err)


def warn(message: str) -> None:
    """One line on stderr that the user should see, e.g. a fallback taken."""
    print(f"advnets: warning: {message}", file=sys.stderr)


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


def one_line(err: BaseException) -> str | None:
    """A one-line message for a user mistake, or None for a bug (which keeps its traceback)."""
    user_error = find_user_error(err)
    if user_error is not None:
        return str(user_error)
    hydra_message = _hydra_message(err)
    if hydra_message is not None:
        return hydra_message
    if isinstance(err, OSError) and err.filename:
        return f"cannot write {err.filename}: {err.strerror}"
    return None


def cli(hydra_main: Callable[[], Any]) -> Callable[[], None]:
    """Wrap a ``@hydra.main`` entry point: Hydra re-raises (HYDRA_FULL_ERROR), mistakes become one line."""

    @functools.wraps(hydra_main)
    def entry() -> None:
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
        try:
            hydra_main()
        except Exception as err:
            message = one_line(err)
            if message is None:
                raise
            print(f"advnets: error: {message}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        if _deferred:
            print(f"advnets: error: {_deferred.pop()}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR)

    return entry
