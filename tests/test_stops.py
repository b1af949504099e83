"""A run stopped from a terminal (Ctrl-C, kill) from a fresh working folder, as a user runs it: exit 130 / 143,
one line naming the run folder and the command that continues it; that command continues it to its end; the
same plain command run again says where the unfinished run is."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from advnets.store.checkpoints import safe_load

from conftest import QUICK, cli_env

EPOCHS = 7  # odd: the continued run is scored at its last epoch, not one of the monitor's (every 2)
COMMAND = [*QUICK, f"trainer.max_epochs={EPOCHS}"]


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "advnets.cli.train", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True
    )


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, as a shell in a terminal starts a command with (a test run in the background
    of a non-interactive shell would hand its children SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_when(cwd: Path, args: list[str], ready: Callable[[], bool], signum: int) -> subprocess.CompletedProcess:
    """``advnets-train ARGS`` stopped by ``signum`` once ``ready()``: SIGINT to its process group (Ctrl-C in a
    terminal), SIGTERM to the process (``kill PID``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "advnets.cli.train", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "never ready to be stopped"
        time.sleep(0.02)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _stop_after_first_checkpoint(cwd: Path, signum: int) -> tuple[subprocess.CompletedProcess, Path]:
    """The plain command, stopped by ``signum`` once its first ``last.ckpt`` is written."""
    pattern = "outputs/quickstart/*/checkpoints/last.ckpt"
    stopped = _stop_when(cwd, COMMAND, lambda: any(cwd.glob(pattern)), signum)
    (last,) = cwd.glob(pattern)
    return stopped, last.parent.parent


def _stop_line(proc: subprocess.CompletedProcess, name: str) -> tuple[Path, int, str]:
    """The run's one line about the stop: (run folder, epochs saved, the command that continues it)."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "stopped by" in line]
    assert len(lines) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.fullmatch(
        rf"advnets: run (\S+) stopped by {name} after epoch (\d+) of {EPOCHS}; continue it with: (.+)", lines[0]
    )
    assert found, lines[0]
    return Path(found.group(1)), int(found.group(2)), found.group(3)


def test_ctrl_c_says_how_to_continue_and_that_command_finishes_the_run(tmp_path: Path) -> None:
    stopped, run_dir = _stop_after_first_checkpoint(tmp_path, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    folder, epoch, command = _stop_line(stopped, "SIGINT")
    assert folder == run_dir
    assert epoch == safe_load(run_dir / "checkpoints" / "last.ckpt")["epoch"] + 1 < EPOCHS
    said = stopped.stdout + stopped.stderr
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said[-3000:]
    assert not (run_dir / "metrics.json").exists()

    again = _train(tmp_path, *COMMAND)  # the same plain command: a new run, after one line about the stopped one
    assert again.returncode == 0, again.stderr[-3000:]
    hints = [line for line in again.stdout.splitlines() if "unfinished run" in line]
    assert len(hints) == 1, again.stdout[-3000:]
    assert f"is in {run_dir}, after epoch {epoch} of {EPOCHS}; continue it with: {command}; starting" in hints[0]
    assert len(list((tmp_path / "outputs" / "quickstart").iterdir())) == 2

    program, *args = shlex.split(command)
    assert program == "advnets-train"
    continued = _train(tmp_path, *args)  # the printed command, as typed
    assert continued.returncode == 0, continued.stderr[-3000:]
    said = continued.stdout + continued.stderr
    assert f"advnets: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in continued.stdout
    assert "exists and is not empty" not in said and "unfinished run" not in said, said[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_trained"] == EPOCHS and results["checkpoint"].endswith("best.ckpt")
    assert (run_dir / "val_curve.csv").read_text().splitlines()[-1].startswith(f"{EPOCHS},")


def test_a_finished_run_continued_for_more_epochs_and_stopped_is_continued_by_the_same_command(tmp_path: Path) -> None:
    """A finished run given more epochs (``allow_config_change=true``), stopped with Ctrl-C before its new end:
    the same command again resumes it to that end; the first end's record no longer says the run is finished."""
    run_dir = tmp_path / "run"
    first = _train(tmp_path, *COMMAND, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    first_end = json.loads((run_dir / "metrics.json").read_text())
    longer = [*QUICK, f"trainer.max_epochs={EPOCHS + 4}", "allow_config_change=true", f"hydra.run.dir={run_dir}"]
    curve = run_dir / "val_curve.csv"
    stopped = _stop_when(tmp_path, longer, lambda: f"\n{EPOCHS + 3}," in curve.read_text(), signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert EPOCHS < safe_load(run_dir / "checkpoints" / "last.ckpt")["epoch"] + 1 < EPOCHS + 4
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "results.json").exists()
    assert json.loads((run_dir / f"metrics.epoch{EPOCHS}.json").read_text()) == first_end  # kept under its epoch
    assert json.loads((run_dir / f"results.epoch{EPOCHS}.json").read_text())["epochs_trained"] == EPOCHS

    again = _train(tmp_path, *longer)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" not in again.stdout + again.stderr
    assert f"advnets: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in again.stdout
    assert json.loads((run_dir / "results.json").read_text())["epochs_trained"] == EPOCHS + 4
    assert json.loads((run_dir / "metrics.json").read_text())["run/epochs"] == EPOCHS + 4


def test_kill_says_how_to_continue_and_exits_143(tmp_path: Path) -> None:
    stopped, run_dir = _stop_after_first_checkpoint(tmp_path, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    folder, epoch, command = _stop_line(stopped, "SIGTERM")
    assert folder == run_dir and epoch == safe_load(run_dir / "checkpoints" / "last.ckpt")["epoch"] + 1
    assert command == shlex.join(["advnets-train", *COMMAND, f"hydra.run.dir={run_dir}"])
    said = stopped.stdout + stopped.stderr
    assert "Traceback" not in said and "Received SIGTERM" not in said, said[-3000:]


def test_a_run_failing_on_an_error_ends_with_the_command_that_continues_it(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    command = [
        *COMMAND,
        "+callbacks.bug._target_=probes.FailsAtEpoch",
        "+callbacks.bug.at=3",
        f"+callbacks.bug.fixed={fixed}",
    ]
    failed = _train(tmp_path, *command)
    assert failed.returncode == 1, failed.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "quickstart").iterdir()
    # the traceback first (a bug is not a user's mistake), then where the run stopped and how to go on
    assert "Traceback" in failed.stderr and "RuntimeError: a bug in the user's callback" in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"advnets: run (\S+) failed after epoch 2 of {EPOCHS} \(RuntimeError\); its checkpoints are kept: "
        r"once the cause is fixed, continue it with: (.+)",
        last,
    )
    assert found and Path(found.group(1)) == run_dir, last
    assert safe_load(run_dir / "checkpoints" / "last.ckpt")["epoch"] + 1 == 2

    fixed.touch()
    program, *args = shlex.split(found.group(2))
    continued = _train(tmp_path, *args)  # the printed command, as typed, after the fix
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert f"advnets: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in continued.stdout
    assert json.loads((run_dir / "results.json").read_text())["epochs_trained"] == EPOCHS


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["seed=1", "hydra.run.dir=old"], ["seed=1"]),
        (["ckpt_path=/other/last.ckpt", "eval.metrics=[]"], ["eval.metrics=[]"]),  # resumes from its own now
    ],
)
def test_the_continuing_command_names_the_folder_and_not_the_checkpoint_it_started_from(
    argv: list[str], expected: list[str]
) -> None:
    from advnets.stops import continue_command

    command = continue_command(Path("/runs/a b"), argv)
    assert shlex.split(command) == ["advnets-train", *expected, "hydra.run.dir=/runs/a b"]
