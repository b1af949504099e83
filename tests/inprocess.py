"""The advnets commands run inside the test process: the same ``main()`` a console script calls, with its argv,
environment, working folder and streams of its own, Hydra's global state cleared after it.

A subprocess pays Python's, torch's and Lightning's import (~5 s) on every call; here a pytest worker pays it once.
Tests whose subject is the process boundary itself (exit status of a signal, a fresh interpreter's imports, the
console scripts, DDP, SLURM) keep ``conftest.run_cli``."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


class _Stream(io.StringIO):
    """A captured text stream that says it is not a terminal (as a pipe to a subprocess is not)."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _isolated(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[tuple[_Stream, _Stream]]:
    """argv, environment, working folder and sys streams of a command's own, all restored after it."""
    saved_argv, saved_env, saved_cwd = sys.argv, dict(os.environ), os.getcwd()
    saved_streams = sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_root = list(root.handlers), root.level
    out, err = _Stream(), _Stream()
    sys.argv = argv
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        _reset_after_job(root, saved_root)


def _reset_after_job(root: logging.Logger, saved: tuple[list[logging.Handler], int]) -> None:
    """What a Hydra job leaves in the process: its global config search path, its HydraConfig (which a next
    command's sweep folder would otherwise be named from) and the root logger's handlers (the job's log file)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # type: ignore[assignment]
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def run_inprocess(command: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``advnets-<command> ARGS`` (``command``: a module of ``advnets.cli``) in this process; its exit status and
    what it wrote to stdout and stderr, as ``subprocess.run(..., capture_output=True, text=True)`` returns them.
    An exception the command lets out is exit status 1 with its traceback on stderr, as the interpreter does."""
    main = importlib.import_module(f"advnets.cli.{command}").main
    code = 0
    with _isolated([f"advnets-{command}", *args], cwd, env) as (out, err):
        try:
            main()
        except SystemExit as stop:
            code = _exit_status(stop.code)
        except BaseException:  # noqa: BLE001 - the interpreter's behaviour: traceback and exit 1
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess([command, *args], code, out.getvalue(), err.getvalue())


def _exit_status(code: object) -> int:
    """``SystemExit.code`` as the process's exit status: None is 0, a message is 1 (and is printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
