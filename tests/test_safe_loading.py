"""Safe loading: a file that would run code when unpickled is refused by advnets-eval and by resume.

The crafted files would create a marker file when unpickled (``builtins.open(marker, "w")``); every test checks
that the refusal is one line and that the marker never appears. A run folder's config that would build something
else (``torch.load`` of such a pickle) or call a resolver advnets' configs do not use is refused too, and so is a
CIFAR-10 batch that is not the published file."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from advnets.cli.publish import publish
from advnets.data import cifar10
from advnets.errors import UserError
from advnets.jobs.generator import load_generator_weights
from advnets.jobs.trusted import load_foreign_config, shipped

from conftest import QUICK, REPO, assert_user_error, compose_cfg, run_refused


class OpensAFile:
    """Unpickling this object calls ``open(marker, "w")``: code run at load time."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted(path: Path, marker: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = OpensAFile(marker)
    if kind == "object":  # a torch.save'd file holding only the object
        torch.save(payload, path)
    elif kind == "checkpoint":  # shaped like a Lightning checkpoint, the object hidden inside
        torch.save({"state_dict": {"generator.out.weight": torch.zeros(2, 2)}, "loops": {}, "epoch": payload}, path)
    else:  # a plain pickle, not a torch zip archive
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.mark.parametrize("kind", ["object", "checkpoint", "pickle"])
def test_safe_load_refuses_a_file_that_runs_code(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    ckpt = _crafted(tmp_path / "generator.pt", marker, kind)
    with pytest.raises(UserError, match="refused to load .*weights_only=True"):
        load_generator_weights(ckpt)
    assert not marker.exists()


def test_advnets_eval_refuses_a_file_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = _crafted(tmp_path / "shared" / "best.ckpt", marker, "checkpoint")
    OmegaConf.save(compose_cfg(QUICK), ckpt.parent / "config.yaml")  # a run's config of advnets' own targets
    proc = run_refused("evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, str(ckpt), "refused", "weights_only=True")
    assert not marker.exists()
    assert not (tmp_path / "eval" / "results.json").exists()


def test_resume_refuses_a_given_checkpoint_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = _crafted(tmp_path / "their.ckpt", marker, "checkpoint")
    proc = run_refused("train", *QUICK, "logger=none", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_user_error(proc, str(ckpt), "refused")
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_a_planted_last_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    planted = _crafted(run_dir / "checkpoints" / "last.ckpt", marker, "checkpoint")
    proc = run_refused("train", *QUICK, "logger=none", f"hydra.run.dir={run_dir}")
    assert_user_error(proc, str(planted), "refused")
    assert not marker.exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # nothing trained


def test_the_admitted_torch_has_safe_globals() -> None:
    """Every load goes through torch.serialization.safe_globals, which torch has from 2.5: no older torch may
    install (the newest admitted stays the tested one)."""
    text = (REPO / "pyproject.toml").read_text()
    torch_floor = re.search(r'"torch>=(\d+)\.(\d+),<=2\.14\.1"', text)
    vision_floor = re.search(r'"torchvision>=0\.(\d+),<=0\.29\.1"', text)
    assert torch_floor and vision_floor, "torch / torchvision pins not found in pyproject.toml"
    assert (int(torch_floor[1]), int(torch_floor[2])) >= (2, 5) and int(vision_floor[1]) >= 20  # torchvision 0.20 ~ 2.5
    assert hasattr(torch.serialization, "safe_globals")


# Configs that came with a checkpoint or run folder are data: only advnets' own targets and resolvers (and the
# user's) are built or resolved from them.


@pytest.fixture
def finished(quick_run: Path) -> Path:
    """A real run folder with its results (what advnets-eval and publish read): conftest's ``quick_run``."""
    return quick_run


def _shared_folder(run: Path, folder: Path, marker: Path) -> Path:
    """A copy of ``run`` whose recorded config builds its dataset with ``torch.load`` of a pickle that would
    create ``marker``: what someone could hand over as a run folder."""
    shutil.copytree(run, folder)
    (folder / "evil.pkl").write_bytes(pickle.dumps(OpensAFile(marker)))
    config = folder / ".hydra" / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["dataset"] = {"_target_": "torch.load", "f": str(folder / "evil.pkl"), "weights_only": False}
    config.write_text(yaml.safe_dump(data))
    return folder


def test_advnets_eval_refuses_a_run_folder_whose_config_builds_another_target(finished: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _shared_folder(finished, tmp_path / "theirs", marker)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_refused("evaluate", str(folder), cwd=cwd)
    assert_user_error(proc, "refused to build 'torch.load'", f"dataset._target_ in {folder / '.hydra' / 'config.yaml'}")
    assert not marker.exists()
    assert not (cwd / "outputs").exists()  # no eval folder left behind


def test_publish_refuses_a_run_folder_whose_config_builds_another_target(finished: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _shared_folder(finished, tmp_path / "theirs", marker)
    with pytest.raises(UserError, match=r"refused to build 'torch.load' \(dataset._target_ in .*config.yaml\)"):
        publish(folder, tmp_path / "published")
    assert not marker.exists() and not (tmp_path / "published").exists()


def _opens_the_marker(_: str) -> str:
    Path(os.environ["ADVNETS_TEST_MARKER"]).write_text("ran")
    return "x"


@pytest.mark.parametrize(
    "text,refused",
    [
        ("callbacks:\n  a:\n    hooks:\n    - _target_: builtins.exec\n      _args_: [x]\n", "'builtins.exec'"),
        ("dataset:\n  _target_: ${oc.env:ADVNETS_TEST_TARGET}\n", "oc.env:ADVNETS_TEST_TARGET"),
        ("dataset: \"${oc.create:'{_target_: torch.load}'}\"\n", r"\$\{oc.create:...\}"),
        ("dataset: \"${oc.decode:'{_target_: torch.load}'}\"\n", r"\$\{oc.decode:...\}"),
        ("name: ${advnets_test_runs_code:x}\n", r"\$\{advnets_test_runs_code:...\}"),
        ("model:\n  generator:\n    _target_: advnets.store.atomic.write_text\n", "'advnets.store.atomic.write_text'"),
    ],
)
def test_a_foreign_config_names_only_the_targets_and_resolvers_of_advnets_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, refused: str
) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("ADVNETS_TEST_TARGET", "advnets.data.digits.DigitsData")
    if not OmegaConf.has_resolver("advnets_test_runs_code"):  # a resolver that runs code, as a plugin could add
        OmegaConf.register_new_resolver("advnets_test_runs_code", _opens_the_marker)
    monkeypatch.setenv("ADVNETS_TEST_MARKER", str(marker))
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(UserError, match=rf"refused to (build|resolve) .*{refused}.* in {config}"):
        load_foreign_config(config)
    assert not marker.exists()


def test_advnets_own_configs_name_the_targets_a_foreign_config_may_build(tmp_path: Path) -> None:
    targets, resolvers = shipped()
    assert {"advnets.data.mnist.MNISTData", "advnets.nets.mlp.Generator", "torch.optim.Adam"} <= targets
    assert not {"torch.load", "builtins.exec", "advnets.store.atomic.write_text"} & targets  # named, not a prefix
    assert "oc.env" in resolvers and not {"oc.create", "oc.decode"} & resolvers
    config = tmp_path / "config.yaml"
    config.write_text("dataset:\n  _target_: advnets.data.digits.DigitsData\n  root: ${oc.env:HOME,data}\n")
    assert load_foreign_config(config).dataset._target_ == "advnets.data.digits.DigitsData"


def test_a_run_folder_of_an_earlier_version_names_its_tensorboard_logger_by_its_present_name(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("logger:\n  tensorboard:\n    _target_: advnets.runs.loggers.TensorBoardLogger\n")
    assert load_foreign_config(config).logger.tensorboard._target_ == "advnets.store.loggers.TensorBoardLogger"
    config.write_text("model:\n  generator:\n    _target_: advnets.runs.atomic.write_text\n")  # moved, not admitted
    with pytest.raises(UserError, match="refused to build 'advnets.runs.atomic.write_text'"):
        load_foreign_config(config)


def test_a_tampered_cifar10_batch_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH]:
        (folder / name).write_bytes(pickle.dumps(OpensAFile(marker)))
    with pytest.raises(UserError, match=r"corrupt CIFAR-10 batch .*data_batch_1: md5 \w+, expected c99cafc1"):
        cifar10.CIFAR10Data("cifar10", 8, 40, 20, root=str(tmp_path), download=False, data_dim=3072).load()
    assert not marker.exists()
