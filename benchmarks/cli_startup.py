"""How fast a mistake is reported: ``advnets-train`` with a bad override, ``advnets-train --help``, and
``advnets-eval`` given no checkpoint, a file that is none (an npz) or a folder without one, each timed from process
start to exit, beside ``python -c "import torch"`` timed in the same rounds (the baseline); and the whole of
``advnets-report`` and ``advnets-compare`` on the published runs (neither needs torch).

Target: a mistake and ``--help`` in at most half the time torch alone takes to import (ratio <= 0.5).

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from paired import paired_rounds

SRC = Path(__file__).resolve().parents[1] / "src"
RESULTS = Path(__file__).resolve().parents[1] / "results"  # the published runs: what report and compare read
COMPARE_OUT = Path(tempfile.gettempdir()) / "advnets-cli-startup-compare"
BASELINE = "import torch (baseline)"
COMMANDS = {
    BASELINE: ["-c", "import torch"],
    "bad override (trainer.max_epoch=5)": ["-m", "advnets.cli.train", "trainer.max_epoch=5"],
    "bad value (game.update=jiont)": ["-m", "advnets.cli.train", "game.update=jiont"],
    "--help": ["-m", "advnets.cli.train", "--help"],
    "eval: no ckpt_path": ["-m", "advnets.cli.evaluate"],
    "eval: an npz (samples.npz)": ["-m", "advnets.cli.evaluate", "samples.npz"],
    "eval: a folder without a checkpoint": ["-m", "advnets.cli.evaluate", "ckpt_path=empty"],
    "advnets-report results/ (whole command)": ["-m", "advnets.cli.report", str(RESULTS)],
    "advnets-compare results/ (whole command)": ["-m", "advnets.cli.compare", str(RESULTS), "--out", str(COMPARE_OUT)],
}
"""Run in a fresh working folder holding ``samples.npz`` (a zip of arrays) and an empty folder ``empty``."""


def seconds(args: list[str], cwd: str) -> float:
    """Wall time of one ``python ARGS`` from start to exit (its exit status is not the point here)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def given_files(cwd: Path) -> list[Path]:
    """What the eval rows are given: an npz (what a run writes beside its checkpoints) and an empty folder."""
    with zipfile.ZipFile(cwd / "samples.npz", "w") as archive:  # np.savez's layout, without importing numpy
        archive.writestr("samples.npy", b"\x93NUMPY")
    (cwd / "empty").mkdir()
    return [cwd / "samples.npz", cwd / "empty"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:  # a fresh working folder: nothing may be written there
        given = given_files(Path(cwd))
        for command in COMMANDS.values():
            seconds(command, cwd)  # warm the file cache once
        times, ratios = paired_rounds(COMMANDS, BASELINE, lambda _, command: seconds(command, cwd), args.repeats)
        left = [p for p in Path(cwd).iterdir() if p not in given]
    print(f"{'command':40s} {'median s':>9s} {'ratio to import torch (median of paired rounds)':>50s}")
    for name in COMMANDS:
        print(f"{name:40s} {statistics.median(times[name]):9.2f} {statistics.median(ratios[name]):50.2f}")
    print(f"files left in the working folder: {len(left)}")


if __name__ == "__main__":
    main()
