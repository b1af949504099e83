"""scripts/device-check.sh --dry: the GPU check's every step on the CPU with a tiny config (no wheels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow  # started first: among the suite's longest
def test_device_check_dry_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        ["bash", "scripts/device-check.sh", "--dry"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["gpu_tests"], summary["benchmark"], summary["train"], summary["publish"]) == ("0",) * 4
    assert summary["logger"] == "wandb" and summary["val_curve_rows"] == 2
    assert summary["results.json"]["dataset"] == "digits" and summary["results.json"]["n_samples"] == 300
    bench = json.loads((out / "throughput.json").read_text())
    assert {"plain PyTorch loop", "Lightning K=1", "Lightning K=4"} <= set(bench["updates_per_s"])
    assert "updates_per_step=" in summary["settings"] and "compile=none" in summary["settings"]
    with tarfile.open(out / "paper_mnist_gpu.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("results.json", "val_curve.csv", "generator.pt", "check.json", "samples_grid.png", "nearest.png"):
        assert f"paper_mnist_gpu/{name}" in names, name
    with tarfile.open(out / "run.tar.gz") as tar:
        names = set(tar.getnames())
    assert any(n.startswith("run/wandb/offline-run-") for n in names) and not any("checkpoints" in n for n in names)
    assert len(list(out.iterdir())) <= 8  # the fixed, small set of files the check writes
    assert "passed" in (out / "device-check.log").read_text()
    assert not list(tmp_path.glob("advnets-device.*"))  # its scratch folder removed


def test_device_check_refuses_a_bad_argument() -> None:
    proc = subprocess.run(["bash", "scripts/device-check.sh", "soon"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("advnets: error: device-check.sh argument 'soon'")


def _script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/device-check.sh", *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True
    )


def test_device_check_stages_have_explicit_budgets() -> None:
    """Each stage's timeout is a stated number of seconds, and a budget that cannot hold them is refused upfront."""
    plan = _script("540", "--plan")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.strip() == (
        "budget 540 s: GPU tests 230 s, benchmark 110 s, training the rest (at least 60 s), "
        "evaluation and publishing 100 s"
    )
    short = _script("400", TESTS_S="300")
    assert short.returncode == 2 and short.stderr.count("\n") == 1
    assert short.stderr.startswith("advnets: error: device-check.sh budget 400 s; allowed: >= 570 s (tests 300 +")
