"""Crash-safe writes: a run killed (SIGKILL) at random moments resumes each time and finishes; no file is torn."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from advnets.run_folder import RunFolder
from advnets.store.checkpoints import safe_load

from conftest import REPO, cli_env

KILLS = 10
COMMAND = [
    "experiment=quickstart",
    "trainer.max_epochs=40",
    "callbacks.parzen_monitor.every_n_epochs=3",
    "callbacks.sample_grid.every_n_epochs=3",
    "callbacks.progress_bar=null",
    "eval.n_samples=300",
    "logger=none",
    "threads=1",
]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns if path.exists() else -1


def _start(run_dir: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "advnets.cli.train", *COMMAND, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _assert_nothing_torn(run_dir: Path) -> None:
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name and "wandb" not in p.parts]
    for ckpt in run_dir.glob("checkpoints/*.ckpt"):
        assert zipfile.ZipFile(ckpt).testzip() is None and "state_dict" in safe_load(ckpt), ckpt
    for name in ("results.json", "metrics.json"):
        json.loads((run_dir / name).read_text())
    assert np.load(run_dir / "samples.npz")["samples"].shape == (300, 64)
    rows = (run_dir / "val_curve.csv").read_text().splitlines()
    epochs = [int(row.split(",")[0]) for row in rows[1:]]
    assert all(len(row.split(",")) == 4 for row in rows) and epochs == [*range(3, 41, 3), 40], rows  # and the last
    for png in run_dir.rglob("*.png"):
        assert png.read_bytes()[-8:-4] == b"IEND", png


@pytest.mark.slow  # started first: among the suite's longest
def test_random_sigkills_resume_and_finish(tmp_path: Path) -> None:
    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    rng = random.Random(11)
    logs, killed = [], 0
    for attempt in range(KILLS):
        log = tmp_path / f"attempt{attempt}.log"
        had_checkpoint, before = last.exists(), _mtime(last)
        proc = _start(run_dir, log)
        while proc.poll() is None and _mtime(last) == before:  # wait for progress: a new checkpoint
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # then strike anywhere: training, a write, evaluation
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        logs.append((had_checkpoint, log.read_text()))
    final = tmp_path / "final.log"
    proc = _start(run_dir, final)
    assert proc.wait(timeout=300) == 0, final.read_text()[-3000:]
    logs.append((True, final.read_text()))
    assert killed >= KILLS - 1
    for had_checkpoint, text in logs:
        assert "Traceback" not in text and "damaged" not in text, text[-2000:]
        assert ("advnets: resuming from" in text) == had_checkpoint, text[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["n_samples"] == 300
    assert safe_load(last)["epoch"] == 39
    _assert_nothing_torn(run_dir)


def test_a_damaged_last_checkpoint_gives_way_to_the_newest_sound_one(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    good = {"state_dict": {"w": torch.zeros(3)}, "loops": {}, "epoch": 4}
    torch.save(good, folder / "older.ckpt")
    os.utime(folder / "older.ckpt", (1, 1))
    torch.save(good, folder / "best.ckpt")
    torch.save(good, folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])
    assert RunFolder(tmp_path).resume_from() == str(folder / "best.ckpt")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"advnets: warning: damaged last.ckpt in {folder}; resuming from best.ckpt instead"]
    for ckpt in folder.iterdir():
        ckpt.write_bytes(b"not a zip")
    assert RunFolder(tmp_path).resume_from() is None
    assert "no sound checkpoint; starting afresh" in capsys.readouterr().err
