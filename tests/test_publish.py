"""publish: a run's small committable record, whose generator alone re-derives the recorded check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advnets.cli.publish import publish

from conftest import run_cli, train_quick


def test_publish_then_eval_the_committed_generator(tmp_path: Path) -> None:
    run_dir = train_quick(tmp_path / "run", "logger=none", "eval.n_samples=500")
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
    proc = run_cli(
        "evaluate",
        f"ckpt_path={dest / 'generator.pt'}",
        f"eval.n_samples={check['n_samples']}",
        f"eval.sigma={check['sigma']}",
        f"seed={check['seed']}",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["parzen_ll"] == pytest.approx(check["parzen_ll"], abs=1e-6)
