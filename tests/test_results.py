"""The committed results/: consistent with each other, re-derivable from the committed generator, and the
README's table is exactly what advnets-report renders from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advnets.cli.report import report
from advnets.metrics.parzen import SIGMA_GRID
from advnets.runs.records import read_curve

from conftest import REPO, run_cli

RESULTS = REPO / "results"
REPORTED = RESULTS / "paper_mnist"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def test_readme_table_is_rendered_from_the_committed_results() -> None:
    text, skipped = report([RESULTS])
    assert not skipped
    readme = (REPO / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1
    block = readme.split(START)[1].split(END)[0]
    assert block.strip() == text.strip()
    assert (RESULTS / "table.md").read_text().strip() == text.strip()


def test_reported_run_follows_the_paper_protocol_and_its_curve() -> None:
    results = json.loads((REPORTED / "results.json").read_text())
    assert results["dataset"] == "mnist" and results["noise"] == "uniform"
    assert (results["n_samples"], results["n_valid"], results["n_test"]) == (10000, 1000, 10000)
    assert results["precision"] == "float64" and results["grid"] == pytest.approx(list(SIGMA_GRID))
    assert results["sigma"] in results["grid"]
    assert results["mean_ll_per_sigma"][results["grid"].index(results["sigma"])] == max(results["mean_ll_per_sigma"])
    curve = read_curve(REPORTED / "val_curve.csv")
    best_epoch = max(curve, key=lambda point: point[1])[0]
    assert results["epoch"] == best_epoch  # the checkpoint selected by validation Parzen
    assert (REPORTED / "generator.pt").stat().st_size <= 12 * 2**20
    for picture in ("samples_grid.png", "nearest.png", "compare_val_parzen.png"):
        path = REPORTED / picture if (REPORTED / picture).exists() else RESULTS / picture
        assert path.read_bytes()[:4] == b"\x89PNG", picture
    assert not list(RESULTS.rglob("*.ckpt")) and not list(RESULTS.rglob("*.npz"))


def test_committed_generator_re_derives_its_recorded_check(tmp_path: Path, mnist_dir: str) -> None:
    check = json.loads((REPORTED / "check.json").read_text())
    proc = run_cli(
        "evaluate",
        f"ckpt_path={REPORTED / 'generator.pt'}",
        f"eval.n_samples={check['n_samples']}",
        f"eval.sigma={check['sigma']}",
        f"seed={check['seed']}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        ADVNETS_DATA_DIR=mnist_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    # same weights, seed and sigma; float32 generation may differ in the last bits across CPUs
    assert again["parzen_ll"] == pytest.approx(check["parzen_ll"], abs=1e-3)


def test_committed_configs_take_the_evaluating_machines_data_folder(monkeypatch) -> None:
    """Every exported config.yaml under results/ leaves data_dir to ADVNETS_DATA_DIR, not a machine's path."""
    from omegaconf import OmegaConf

    monkeypatch.setenv("ADVNETS_DATA_DIR", "/elsewhere/data")
    exported = sorted(p for p in RESULTS.rglob("config.yaml") if p.parent.name != ".hydra")
    assert exported
    for path in exported:
        assert OmegaConf.load(path).dataset.root == "/elsewhere/data", path


def test_committed_configs_name_their_datasets_own_class() -> None:
    """advnets-eval builds each exported config's dataset by its _target_: a class that reads its dataset."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from advnets.data import ImageDataModule

    for path in sorted(p for p in RESULTS.rglob("config.yaml") if p.parent.name != ".hydra"):
        cls = get_class(OmegaConf.load(path).dataset._target_)
        assert issubclass(cls, ImageDataModule) and cls.read is not ImageDataModule.read, path
