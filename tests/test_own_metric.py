"""Metrics from the registry alone: every registered metric reaches the report and compare with its title, and a
metric of one's own, given by config (``eval.extra_metrics``), is computed, recorded and shown with no edit to
advnets, while a run folder that names a metric target nobody here trusts is refused before anything imports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from advnets.cli.compare import main as compare_main
from advnets.cli.report import report
from advnets.errors import UserError
from advnets.metrics import registry

from conftest import QUICK, assert_user_error, cli_env, compose_cfg, run_advnets, run_cli

PACKAGE = "own_metric_pkg"
METRIC_CODE = '''
"""A package of one's own: a metric advnets knows nothing of."""

from advnets.metrics.registry import Metric


class MeanGap(Metric):
    """How far the samples' mean pixel is from the test images'."""

    title = "mean gap"
    higher_is_better = False
    description = "scale x |mean pixel of the samples - mean pixel of the test images|"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def compute(self, fake, real, settings) -> float:
        return self.scale * float((fake.pixels.mean() - real.pixels.mean()).abs())


class NoTitle:
    higher_is_better = True

    def compute(self, fake, real, settings) -> float:
        return 0.0
'''
TRAP_CODE = '''
"""Importing this module leaves a file: what a refused config must never do."""

from pathlib import Path

Path(__file__).with_name("IMPORTED").write_text("imported")


class Trap:
    title = "trap"
    higher_is_better = True

    def compute(self, fake, real, settings) -> float:
        return 0.0
'''
OWN = f"+eval.extra_metrics.mean_gap={{_target_:{PACKAGE}.MeanGap,scale:2.0}}"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``own_metric_pkg`` in a folder of its own, importable here and (``PYTHONPATH``) in subprocesses."""
    root = tmp_path_factory.mktemp("own")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text(METRIC_CODE)
    (root / PACKAGE / "trap.py").write_text(TRAP_CODE)
    conf = root / "conf" / "eval"
    conf.mkdir(parents=True)
    mine = f"defaults:\n  - paper\n  - _self_\nextra_metrics:\n  mean_gap:\n    _target_: {PACKAGE}.MeanGap\n"
    (conf / "mine.yaml").write_text(mine + "    scale: 2.0\n")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop(PACKAGE, None)


def _env(package: Path) -> dict[str, str]:
    return {"PYTHONPATH": cli_env()["PYTHONPATH"] + f":{package}"}


@pytest.fixture(scope="module")
def trained(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch quickstart whose evaluation adds the package's metric, given on the command line."""
    run = tmp_path_factory.mktemp("trained") / "run"
    args = (*QUICK, "trainer.max_epochs=2", "logger=none", "eval.metrics=[fid]", OWN, f"hydra.run.dir={run}")
    proc = run_advnets("train", *args, **_env(package))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from hydra.utils import instantiate

    splits = instantiate(compose_cfg(["experiment=quickstart"]).dataset).load()
    return splits.train, splits.test


def test_a_metric_given_on_the_command_line_is_computed_and_recorded_in_results_json(trained: Path) -> None:
    results = json.loads((trained / "results.json").read_text())
    assert list(results["metrics"]) == list(results["metrics_reference"]) == ["fid", "mean_gap"]
    train, test = _digits()
    samples = torch.from_numpy(np.load(trained / "samples.npz")["samples"])
    assert results["metrics"]["mean_gap"] == pytest.approx(2.0 * float((samples.mean() - test.mean()).abs()), 1e-5)
    floor = 2.0 * float((train[: len(samples)].mean() - test.mean()).abs())  # real vs real: training images
    assert results["metrics_reference"]["mean_gap"] == pytest.approx(floor, rel=1e-5)
    protocol = results["metrics_protocol"]
    assert protocol["higher_is_better"] == {"fid": False, "mean_gap": False}
    assert protocol["own_metrics"] == {
        "mean_gap": {
            "title": "mean gap",
            "higher_is_better": False,
            "description": "scale x |mean pixel of the samples - mean pixel of the test images|",
        }
    }
    assert results["eval"]["extra_metrics"] == {"mean_gap": {"_target_": f"{PACKAGE}.MeanGap", "scale": 2.0}}


def test_report_and_compare_show_a_metric_of_ones_own_by_its_recorded_title(trained: Path, tmp_path: Path) -> None:
    value = json.loads((trained / "results.json").read_text())["metrics"]["mean_gap"]
    shown = run_cli("report", str(trained))  # without the package on its path: results.json's record alone
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "| advnets run | dataset | FID ↓ | mean gap ↓ |" in shown.stdout
    assert f"| {value:.3f} |" in shown.stdout
    assert "mean gap: scale x |mean pixel of the samples - mean pixel of the test images|." in shown.stdout
    out = tmp_path / "compare"
    compared = run_advnets("compare", str(trained), "--out", str(out), "--metric", "test_mean_gap")
    assert compared.returncode == 0, compared.stderr[-2000:]
    md = (out / "compare.md").read_text()
    assert "| runs | seeds | mean gap |" in md and "mean gap ↓" in md
    (row,) = csv.DictReader((out / "compare.csv").open())
    assert float(row["test_mean_gap_mean"]) == pytest.approx(value)
    (run_row,) = csv.DictReader((out / "compare_runs.csv").open())
    assert float(run_row["test_mean_gap"]) == pytest.approx(value) and float(run_row["test_fid"]) > 0


def test_a_metric_from_ones_own_config_dir_is_computed_by_advnets_eval(
    trained: Path, package: Path, tmp_path: Path
) -> None:
    """advnets-eval on the run folder: its config names the package's metric, which the user's --config-dir names
    too, so it is built; ``eval=mine`` (that folder's eval option) computes it again, on the same samples."""
    recorded = json.loads((trained / "results.json").read_text())["metrics"]["mean_gap"]
    args = ["--config-dir", str(package / "conf"), str(trained), "eval=mine", "eval.metrics=[]"]
    args += ["eval.n_samples=300", "eval.n_valid=300"]
    proc = run_advnets("evaluate", *args, "logger=none", f"hydra.run.dir={tmp_path / 'eval'}", **_env(package))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert list(results["metrics"]) == ["mean_gap"] and results["metrics"]["mean_gap"] == pytest.approx(recorded)


def test_a_run_folder_naming_a_metric_target_nobody_here_trusts_is_refused_before_any_import(
    trained: Path, package: Path, tmp_path: Path
) -> None:
    """A run folder from someone else whose eval config names a metric class: data, never code."""
    foreign = tmp_path / "foreign"
    (foreign / ".hydra").mkdir(parents=True)
    (foreign / "checkpoints").mkdir()
    (foreign / "checkpoints" / "best.ckpt").write_bytes((trained / "checkpoints" / "best.ckpt").read_bytes())
    config = (trained / ".hydra" / "config.yaml").read_text()
    trap = f"{PACKAGE}.trap.Trap"
    assert "  extra_metrics:\n    mean_gap:\n" in config
    config = config.replace("  extra_metrics:\n", f"  extra_metrics:\n    trap:\n      _target_: {trap}\n", 1)
    (foreign / ".hydra" / "config.yaml").write_text(config)
    proc = run_advnets("evaluate", str(foreign), "logger=none", f"hydra.run.dir={tmp_path / 'eval'}", **_env(package))
    assert_user_error(proc, f"refused to build '{trap}' (eval.extra_metrics.trap._target_ in {foreign}")
    assert not (package / PACKAGE / "IMPORTED").exists()  # the module was never imported
    assert not (tmp_path / "eval").exists()


def test_a_metric_that_is_no_metric_is_one_line_before_training(package: Path, tmp_path: Path) -> None:
    bad = f"+eval.extra_metrics.gap={{_target_:{PACKAGE}.NoTitle}}"
    proc = run_advnets("train", *QUICK, "logger=none", bad, f"hydra.run.dir={tmp_path / 'run'}", **_env(package))
    assert_user_error(proc, f"eval.extra_metrics.gap: {PACKAGE}.NoTitle has no title")
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


class _Shape:
    title, higher_is_better, description = "t", True, ""

    def compute(self, fake, real, settings) -> float:
        return 0.0


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("fid", {}, "eval.extra_metrics.fid: fid is advnets' own metric"),
        ("Gap", {}, "eval.extra_metrics.Gap: a metric's name is lower-case letters"),
        ("gap", {"title": ""}, "eval.extra_metrics.gap: _Shape has no title"),
        ("gap", {"higher_is_better": "yes"}, "eval.extra_metrics.gap: _Shape.higher_is_better is 'yes'"),
        ("gap", {"compute": None}, "eval.extra_metrics.gap: _Shape has no compute(fake, real, settings)"),
        ("gap", {"description": 3}, "eval.extra_metrics.gap: _Shape.description is 3; allowed: one line of text"),
    ],
)
def test_what_a_metric_of_ones_own_must_provide(name: str, change: dict, message: str) -> None:
    metric = _Shape()
    for key, value in change.items():
        setattr(metric, key, value)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.own_spec(name, metric)
    good = _Shape()
    assert registry.own_spec("gap", good) == registry.MetricSpec("gap", True, "t", "", good.compute)


def _results(metrics: dict[str, float], seed: int, **protocol: object) -> dict:
    return {
        "parzen_ll": 5.0,
        "parzen_se": 0.4,
        "sigma": 0.2,
        "dataset": "digits",
        "seed": seed,
        "n_samples": 2000,
        "metrics": metrics,
        "metrics_protocol": {"higher_is_better": {n: True for n in metrics}, **protocol},
    }


def test_report_and_compare_show_every_registered_metric_with_its_title(tmp_path: Path, capsys) -> None:
    for seed in (0, 1):
        run = tmp_path / "runs" / f"s{seed}"
        run.mkdir(parents=True)
        values = {
            name: 0.25 + i + seed for i, name in enumerate(reversed(registry.SUITE))
        }  # not in the registry's order
        (run / "results.json").write_text(json.dumps(_results(values, seed)))
    titles = [f"{registry.METRICS[n].title} {registry.METRICS[n].arrow}" for n in registry.SUITE]
    assert all(registry.METRICS[n].title for n in registry.SUITE) and len(set(titles)) == len(titles)
    text, _ = report([tmp_path / "runs"])
    assert "| advnets run | dataset | " + " | ".join(titles) + " |" in text
    out = tmp_path / "out"
    compare_main([str(tmp_path / "runs"), "--out", str(out)])
    capsys.readouterr()
    header = next(line for line in (out / "compare.md").read_text().splitlines() if line.startswith("| runs |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[5:-4] == [registry.METRICS[n].title for n in registry.SUITE]  # after runs, seeds and the LL columns
    assert (
        "Beyond Parzen (samples vs test images, domain classifier): " + ", ".join(titles)
        in (out / "compare.md").read_text()
    )


def test_a_record_cannot_retitle_or_turn_a_registered_metric(tmp_path: Path, capsys) -> None:
    """What a results.json records of a metric is used only for names the registry does not hold."""
    (tmp_path / "r").mkdir()
    own = {"fid": {"title": "FID (higher is better)", "higher_is_better": True}}
    own["sharpness"] = {"title": "sharpness", "higher_is_better": True, "description": "edge energy"}
    record = _results({"fid": 40.0, "sharpness": 0.5, "mystery": 1.0}, 0, own_metrics=own)
    (tmp_path / "r" / "results.json").write_text(json.dumps(record))
    text, notes = report([tmp_path])
    assert "| advnets run | dataset | FID ↓ | sharpness ↑ |" in text and "edge energy" in text
    assert notes == ["left out metric mystery: neither the registry nor results.json gives its title"]
    compare_main([str(tmp_path), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| FID | sharpness |" in md and "FID ↓, sharpness ↑" in md and "mystery" not in md.split("## Notes")[0]
    assert "- left out metric mystery: neither the registry nor results.json gives its title" in md


def test_the_registry_report_and_compare_import_without_torch() -> None:
    probe = "import sys, advnets.cli.report, advnets.cli.compare; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


def test_every_registered_metric_names_a_compute_that_imports_and_is_computed_by_default() -> None:
    from omegaconf import OmegaConf

    assert OmegaConf.to_container(compose_cfg([]).eval, resolve=True)["metrics"] == list(registry.SUITE)
    for name in registry.SUITE:
        assert callable(registry.compute_of(registry.METRICS[name])), name
    with pytest.raises(UserError, match="parzen_ll is not computed by the metric suite"):
        registry.compute_of(registry.METRICS["parzen_ll"])
