"""The committed results/: consistent with each other, re-derivable from the committed generator, and the
README's table is exactly what advnets-report renders from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from advnets.cli.report import report
from advnets.metrics.parzen import SIGMA_GRID
from advnets.store.records import read_curve

from conftest import REPO, compose_cfg, run_cli

RESULTS = REPO / "results"
REPORTED = RESULTS / "paper_mnist"  # the released recipe, 300 epochs
PUBLISHED = sorted(path.parent for path in RESULTS.glob("*/generator.pt"))  # every run whose generator is committed
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def test_readme_table_is_rendered_from_the_committed_results() -> None:
    text, skipped = report([RESULTS])
    assert not skipped
    readme = (REPO / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1
    block = readme.split(START)[1].split(END)[0]
    assert block.strip() == text.strip()
    assert (RESULTS / "table.md").read_text().strip() == text.strip()


@pytest.mark.parametrize("run", PUBLISHED, ids=lambda path: path.name)
def test_published_run_follows_the_paper_protocol_and_its_curve(run: Path) -> None:
    from omegaconf import OmegaConf

    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "mnist" and results["noise"] == OmegaConf.load(run / "config.yaml").game.noise
    assert (results["n_samples"], results["n_valid"], results["n_test"]) == (10000, 1000, 10000)
    assert results["precision"] == "float64" and results["grid"] == pytest.approx(list(SIGMA_GRID))
    assert results["sigma"] in results["grid"]
    assert results["mean_ll_per_sigma"][results["grid"].index(results["sigma"])] == max(results["mean_ll_per_sigma"])
    curve = read_curve(run / "val_curve.csv")
    best_epoch = max(curve, key=lambda point: point[1])[0]
    assert results["epoch"] == best_epoch  # the checkpoint selected by validation Parzen
    assert (run / "generator.pt").stat().st_size <= 12 * 2**20
    for picture in ("samples_grid.png", "nearest.png", "compare_val_parzen.png"):
        path = run / picture if (run / picture).exists() else RESULTS / picture
        assert path.read_bytes()[:4] == b"\x89PNG", picture
    assert not list(RESULTS.rglob("*.ckpt")) and not list(RESULTS.rglob("*.npz"))


@pytest.mark.parametrize("run", PUBLISHED, ids=lambda path: path.name)
def test_committed_generator_re_derives_its_recorded_check(run: Path, tmp_path: Path, mnist_dir: str) -> None:
    check = json.loads((run / "check.json").read_text())
    proc = run_cli(
        "evaluate",
        f"ckpt_path={run / 'generator.pt'}",
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


MONITOR = "callbacks.parzen_monitor."
TRAINING_LENGTH = ("trainer.max_epochs=", "allow_config_change=")


def _first_epochs_recorded(run: Path) -> tuple[int, dict[str, dict[str, str]]]:
    """The epoch of ``first_epochs.csv`` and its rows by CPU."""
    with open(run / "first_epochs.csv", newline="") as table:
        recorded = {row["cpu"]: row for row in csv.DictReader(table)}
    epochs = {int(row["epoch"]) for row in recorded.values()}
    assert len(epochs) == 1, run
    return epochs.pop(), recorded


def trained_first_row(folder: Path) -> list[str]:
    """The first row of a run folder's validation curve: epoch, step, Parzen, sigma."""
    return (folder / "val_curve.csv").read_text().splitlines()[1].split(",")


def _monitor_row(trained: Path, overrides: list[str], mnist_dir: str) -> str:
    """The first ``val_curve.csv`` row the run of ``overrides`` would write, read off the generator ``trained``
    left at that epoch (``last.ckpt``) with the run's own monitor settings, as the monitor computes it."""
    from hydra.utils import instantiate

    from advnets.callbacks import ParzenMonitor
    from advnets.jobs.generator import build_generator, load_generator_weights

    cfg = compose_cfg([*overrides, f"dataset.root={mnist_dir}"])
    monitor: ParzenMonitor = instantiate(cfg.callbacks.parzen_monitor)
    datamodule = instantiate(cfg.dataset)
    state, _ = load_generator_weights(trained / "checkpoints" / "last.ckpt")
    generator = build_generator(cfg.model, state, datamodule.data_dim)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # as the run's own process scored it
    try:
        ll, sigma = monitor.score(generator, cfg.game.noise, cfg.seed, datamodule.load().valid)
    finally:
        torch.set_num_threads(threads)
    epoch, step = trained_first_row(trained)[:2]
    return f"{epoch},{step},{ll:.4f},{sigma:.6g}"


@pytest.mark.slow  # started first: among the suite's longest
def test_main_reproduces_every_published_runs_first_epochs(tmp_path: Path, mnist_dir: str) -> None:
    """Each published run's first epochs regenerated from main by its own command, digit for digit, on a CPU whose
    result is recorded: float rounding differs between CPUs (their kernels sum in other orders) and thousands of
    updates of a GAN amplify it, so ``first_epochs.csv`` holds the validation Parzen after the first epochs for
    each CPU it was checked on, and, where the run's curve has that epoch, the curve's own point.

    The game draws every update's randomness from a generator seeded by the step, so the monitor leaves training
    as it was: runs whose commands differ only in their length and their monitor (the released recipe for 300 and
    for 1,000 epochs) share one training of those first epochs, and each run's own monitor then scores it."""
    from advnets.store.provenance import cpu_name

    here = cpu_name()
    trainings: dict[tuple[tuple[str, ...], int], Path] = {}
    for run in PUBLISHED:
        results = json.loads((run / "results.json").read_text())
        assert results["command"].startswith("advnets-train ") and results["source_commit"]
        epoch, recorded = _first_epochs_recorded(run)
        committed = (run / "val_curve.csv").read_text().splitlines()
        for cpu, row in recorded.items():  # the curve's own first point
            if cpu.startswith("the run's own machine"):
                assert committed[1] == ",".join(row[k] for k in ("epoch", "step", "val_parzen_ll", "sigma"))
        overrides = [o for o in results["overrides"] if not o.startswith(TRAINING_LENGTH)]
        training = tuple(o for o in overrides if not o.startswith(MONITOR))
        first = (training, epoch) not in trainings
        if first:
            folder = trainings[training, epoch] = tmp_path / run.name
            proc = run_cli(
                "train",
                *(o for o in overrides if not o.startswith(f"{MONITOR}every_n_epochs=")),
                f"trainer.max_epochs={epoch}",
                f"{MONITOR}every_n_epochs={epoch}",
                "evaluate=false",
                "logger=none",
                f"hydra.run.dir={folder}",
                ADVNETS_DATA_DIR=mnist_dir,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert (folder / "val_curve.csv").read_text().splitlines()[0] == committed[0]
        folder = trainings[training, epoch]
        again = ",".join(trained_first_row(folder)) if first else _monitor_row(folder, overrides, mnist_dir)
        assert here in recorded, f"no recorded first point of {run.name} for {here!r}: this CPU regenerated {again!r}"
        expected = ",".join(recorded[here][k] for k in ("epoch", "step", "val_parzen_ll", "sigma"))
        assert again == expected, run.name  # same step, same validation Parzen, same sigma as recorded for this CPU
    assert len(trainings) < len(PUBLISHED)  # the released recipe's runs share their first epochs' training
