"""publish: a run's small committable record, whose generator alone re-derives the recorded check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from advnets.cli.publish import publish

from conftest import assert_user_error, run_advnets, run_refused


@pytest.fixture
def trained(quick_run: Path) -> Path:
    """A finished, evaluated quickstart run (conftest's ``quick_run``), only read here."""
    return quick_run


def test_publish_then_eval_the_committed_generator(trained: Path, tmp_path: Path) -> None:
    run_dir = trained
    dest = publish(run_dir, tmp_path / "published", label="quick test")
    names = sorted(p.name for p in dest.iterdir())
    assert names == [
        ".hydra",
        "check.json",
        "config.yaml",
        "generator.pt",
        "nearest.png",
        "results.json",
        "samples_grid.png",
        "val_curve.csv",
    ]
    assert sorted(p.name for p in (dest / ".hydra").iterdir()) == ["config.yaml", "overrides.yaml"]
    results = json.loads((dest / "results.json").read_text())
    assert results["label"] == "quick test" and not results["checkpoint"].startswith("/")
    check = json.loads((dest / "check.json").read_text())
    out = tmp_path / "recheck"
    proc = run_advnets(
        "evaluate",
        f"ckpt_path={dest / 'generator.pt'}",
        f"eval.n_samples={check['n_samples']}",
        f"eval.sigma={check['sigma']}",
        f"seed={check['seed']}",
        "logger=none",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["parzen_ll"] == pytest.approx(check["parzen_ll"], abs=1e-6)


def _without_best(run_dir: Path, copy: Path) -> Path:
    """The run as one stopped before its first monitored epoch: no best.ckpt, results of the last weights."""
    shutil.copytree(run_dir, copy)
    (copy / "checkpoints" / "best.ckpt").unlink()
    results = json.loads((copy / "results.json").read_text())
    (copy / "results.json").write_text(json.dumps({**results, "checkpoint": ""}))
    return copy


def test_a_run_without_a_best_checkpoint_publishes_its_last(trained: Path, tmp_path: Path, capsys) -> None:
    run_dir = _without_best(trained, tmp_path / "run")
    dest = publish(run_dir, tmp_path / "published")
    assert json.loads((dest / "results.json").read_text())["checkpoint"] == "run/checkpoints/last.ckpt"
    assert (dest / "generator.pt").is_file() and (dest / "check.json").is_file()
    assert "publishing its last weights" in capsys.readouterr().err


def test_a_run_without_any_checkpoint_is_one_clear_line(trained: Path, tmp_path: Path) -> None:
    run_dir = _without_best(trained, tmp_path / "run")
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    proc = run_refused("publish", str(run_dir), str(tmp_path / "published"))
    assert_user_error(proc, "recorded no best checkpoint", "last.ckpt", "no weights to publish")
