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
        assert cfg.model.generator._target_ == "dcgan_digits.nets.DCGANGenerator" and cfg.dataset.name == "digits"
        validate(cfg, TRAIN)
    cfg = compose_cfg([f"hydra.searchpath=[file://{CONF}]", "experiment=dcgan_digits", "+model.generator.chanels=[8]"])
    with pytest.raises(UserError, match=r"unknown key model.generator.chanels \(did you mean model.generator.channels"):
        validate(cfg, TRAIN)


def test_the_example_trains_one_epoch_and_evaluates_through_advnets_own_commands(tmp_path: Path, importable) -> None:
    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "--config-dir",
        str(CONF),
        "experiment=dcgan_digits",
        "debug=fast",
        "trainer.limit_train_batches=null",  # the whole epoch: 12 batches
        "eval.metrics=[]",  # the Parzen protocol only: the suite does not depend on the nets
        "threads=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        **importable,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run/epochs"] == 1 and metrics["run/global_step"] == 12 * 2
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "digits" and results["n_samples"] == 300
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["generator.up.1.weight"].shape == (128, 64, 4, 4)  # the example's transposed convolution
    assert (run / "nearest.png").is_file() and (run / "samples" / "epoch_0001.png").is_file()

    refused = run_cli("evaluate", str(run), "logger=none", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    # the run's config names the example's classes: built only where the user's own configs name them too
    assert_user_error(refused, "refused to build 'dcgan_digits.nets.DCGANGenerator'", "--config-dir")
    assert not (tmp_path / "eval").exists()
    again = run_cli(
        "evaluate",
        "--config-dir",
        str(CONF),
        f"ckpt_path={run}",
        "eval.n_samples=300",
        "eval.n_valid=300",
        "eval.metrics=[]",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
        **importable,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["parzen_ll"] == results["parzen_ll"]


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
