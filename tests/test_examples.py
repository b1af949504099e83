"""examples/dcgan_digits: a user package's own nets and configs, trained and evaluated without touching advnets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from advnets.errors import UserError
from advnets.schema import TRAIN, validate

from conftest import REPO, assert_user_error, compose_cfg, run_cli

EXAMPLE = REPO / "examples" / "dcgan_digits"
CONF = EXAMPLE / "dcgan_digits" / "conf"


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The example package importable here and in the CLI's subprocesses (as `pip install -e` would make it)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), str(EXAMPLE)])}


def test_the_examples_configs_pass_the_schema_by_their_classes_signatures(importable) -> None:
    """No schema change for new classes: their keys are checked against their own signatures."""
    for searchpath in (f"file://{CONF}", "pkg://dcgan_digits.conf"):  # --config-dir's folder, or the package's
        cfg = compose_cfg([f"hydra.searchpath=[{searchpath}]", "experiment=dcgan_digits"])
        assert (
            cfg.model.generator._target_ == "dcgan_digits.nets.DCGANGenerator" and cfg.dataset.name == "nudged_digits"
        )
        assert (
            cfg.loss._target_ == "dcgan_digits.losses.LeastSquaresLoss" and "confidence_gap" in cfg.eval.extra_metrics
        )
        validate(cfg, TRAIN)
    cfg = compose_cfg([f"hydra.searchpath=[file://{CONF}]", "experiment=dcgan_digits", "+model.generator.chanels=[8]"])
    with pytest.raises(UserError, match=r"unknown key model.generator.chanels \(did you mean model.generator.channels"):
        validate(cfg, TRAIN)
    cfg = compose_cfg([f"hydra.searchpath=[file://{CONF}]", "experiment=dcgan_digits", "model.generator.noise_dim=0"])
    with pytest.raises(UserError, match=r"model.generator.noise_dim=0; allowed: an integer >= 1"):  # its Positive
        validate(cfg, TRAIN, targets=False)  # the plain pass: the package's source read, not imported


def test_the_example_trains_one_epoch_and_evaluates_through_advnets_own_commands(tmp_path: Path, importable) -> None:
    """Its nets, loss, dataset and metric through config alone: the domain classifier of its dataset into the user
    cache, one epoch of its experiment, then advnets-eval on the run (docs/extending.md's commands)."""
    own = {**importable, "ADVNETS_CACHE_DIR": str(tmp_path / "cache")}
    classifier = run_cli(
        "classifier", "--config-dir", str(CONF), "dataset=nudged_digits", "threads=1", cwd=tmp_path, **own
    )
    assert classifier.returncode == 0, classifier.stderr[-3000:]
    card = json.loads((tmp_path / "cache" / "classifiers" / "nudged_digits.json").read_text())
    assert card["n_classes"] == 10 and card["test_accuracy"] > 0.8  # 297 test digits, x5 by their shifts

    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "--config-dir",
        str(CONF),
        "experiment=dcgan_digits",
        "debug=fast",
        "trainer.limit_train_batches=null",  # the whole epoch: 60 batches of the nudged digits
        "threads=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        **own,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "_target_: dcgan_digits.losses.LeastSquaresLoss" in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run/epochs"] == 1 and metrics["run/global_step"] == 60 * 2
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "nudged_digits" and results["n_samples"] == 300
    # the suite through the cached classifier, and the package's own metric beside it
    assert {"fid", "class_kl", "confidence_gap"} <= set(results["metrics"])
    assert 0 <= results["metrics"]["confidence_gap"] <= 1
    assert results["metrics_protocol"]["own_metrics"]["confidence_gap"]["title"] == "confidence gap"
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["generator.up.1.weight"].shape == (128, 64, 4, 4)  # the example's transposed convolution
    assert (run / "nearest.png").is_file() and (run / "samples" / "epoch_0001.png").is_file()

    refused = run_cli("evaluate", str(run), "logger=none", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    # the run's config names the example's classes: built only where the user's own configs name them too
    assert_user_error(refused, "refused to build 'dcgan_digits.", "--config-dir")
    assert not (tmp_path / "eval").exists()
    again = run_cli(
        "evaluate",
        "--config-dir",
        str(CONF),
        f"ckpt_path={run}",
        "eval=own",
        "eval.n_samples=300",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
        **own,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated["parzen_ll"] == results["parzen_ll"]
    assert evaluated["metrics"]["confidence_gap"] == results["metrics"]["confidence_gap"]


def test_the_examples_loss_and_dataset_are_what_they_say() -> None:
    """Least squares by hand; the nudged digits: each split's images and their four one-pixel shifts, labels
    repeated alike, the splits cut before the shifts (no shifted copy of a test digit is trained on)."""
    import sys

    sys.path.insert(0, str(EXAMPLE))
    try:
        from dcgan_digits.data import NudgedDigits, nudge
        from dcgan_digits.losses import LeastSquaresLoss
    finally:
        sys.path.remove(str(EXAMPLE))
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    loss = LeastSquaresLoss()
    assert float(loss.d_loss(real, fake)) == 0.5 * ((0 + 4) / 2 + (0 + 4) / 2)
    assert float(loss.g_loss(fake)) == 0.5 * (1 + 9) / 2

    image = torch.arange(64.0).view(1, 64)
    up, down, left, right = nudge(image)[1:].view(4, 8, 8)
    grid = image.view(8, 8)
    assert torch.equal(up[:7], grid[1:]) and not up[7].any() and torch.equal(down[1:], grid[:7])
    assert torch.equal(left[:, :7], grid[:, 1:]) and torch.equal(right[:, 1:], grid[:, :7])

    data = NudgedDigits(name="nudged_digits", batch_size=100, n_train=1200, n_valid=300, download=False)
    splits, labels = data.load(), data.labels()
    assert [len(splits.train), len(splits.valid), len(splits.test)] == [6000, 1500, 297 * 5]
    assert torch.equal(labels.train[:1200], labels.train[1200:2400]) and len(labels.test) == len(splits.test)
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().data).float() / 16  # split first, then nudged: the test set's own digits
    assert torch.equal(splits.test, nudge(digits[1500:])) and torch.equal(splits.train, nudge(digits[:1200]))


def test_help_lists_the_groups_and_options_a_config_dir_adds() -> None:
    from advnets import CONF_DIR
    from advnets.cli.help import help_text, user_config_dirs

    for argv in (["--help", "--config-dir", str(CONF)], ["-cd", str(CONF), "-h"], [f"--config-dir={CONF}", "-h"]):
        assert user_config_dirs(argv) == [CONF]
    page = help_text("advnets-train", "train", [("advnets-train", "one run")], Path(CONF_DIR), [CONF]).splitlines()
    (models,) = [line for line in page if line.startswith("model: ")]
    (experiments,) = [line for line in page if line.startswith("experiment: ")]
    assert {"dcgan_digits", "small", "paper_mnist"} <= set(models.removeprefix("model: ").split(", "))
    assert {"dcgan_digits", "quickstart"} <= set(experiments.removeprefix("experiment: ").split(", "))
    assert user_config_dirs(["--config-dir", str(CONF / "missing")]) == []  # a folder that is not there adds nothing
