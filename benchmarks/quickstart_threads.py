"""The quickstart's wall time by torch thread count, with W&B (offline) on and off: ``advnets-train`` from a fresh
folder, process start to exit, each setting timed in the same rounds as the baseline (``threads=1``, W&B on).

The default of ``threads`` is chosen from these numbers: the ratios say how much slower each other setting is.

    python benchmarks/quickstart_threads.py [--repeats 3] [--epochs 150]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paired import paired_rounds

SRC = Path(__file__).resolve().parents[1] / "src"
BASELINE = "threads=1, wandb"
SETTINGS = {
    BASELINE: ["threads=1"],
    "threads=2, wandb": ["threads=2"],
    "torch's default (threads=null), wandb": ["threads=null"],
    "default (threads=auto), wandb": [],
    "threads=1, logger=none": ["threads=1", "logger=none"],
    "threads=2, logger=none": ["threads=2", "logger=none"],
    "torch's default, logger=none": ["threads=null", "logger=none"],
}
log = logging.getLogger("quickstart_threads")


def seconds(overrides: list[str], epochs: int) -> float:
    """Wall time of one quickstart ``advnets-train`` in a fresh folder (its default ``outputs/``)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    env.pop("OMP_NUM_THREADS", None)  # torch's default is what a user gets
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "advnets.cli.train", f"trainer.max_epochs={epochs}", *overrides],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"advnets-train {' '.join(overrides)} failed:\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=150, help="the quickstart's own: 150")
    args = parser.parse_args()

    def time_one(name: str, overrides: list[str]) -> float:
        took = seconds(overrides, args.epochs)
        log.info("%s %.1f s", name, took)
        return took

    times, ratios = paired_rounds(SETTINGS, BASELINE, time_one, args.repeats)
    print(f"{'setting':40s} {'median s':>9s} {'ratio to ' + BASELINE:>28s}")
    for name in SETTINGS:
        print(f"{name:40s} {statistics.median(times[name]):9.1f} {statistics.median(ratios[name]):28.2f}")
    print(f"cores: {len(os.sched_getaffinity(0))}, epochs: {args.epochs}, rounds: {args.repeats}")


if __name__ == "__main__":
    main()
