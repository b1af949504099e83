"""User mistakes become one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input (config value, path, data file); the message names value and allowed."""


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``, also when a library wrapped it (Hydra's InstantiationException does)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn``; on a ``UserError`` (however wrapped) print one line and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None:
                raise
            print(f"advnets: error: {user_error}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapper
