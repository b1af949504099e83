"""Safe loading: a file that would run code when unpickled is refused by advnets-eval and by resume.

The crafted files would create a marker file when unpickled (``builtins.open(marker, "w")``); every test checks
that the refusal is one line and that the marker never appears."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from advnets.errors import UserError
from advnets.runs.generator import load_generator_weights

from conftest import QUICK, REPO, assert_user_error, run_cli


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
    proc = run_cli("evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, str(ckpt), "refused", "weights_only=True")
    assert not marker.exists()
    assert not (tmp_path / "eval" / "results.json").exists()


def test_resume_refuses_a_given_checkpoint_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = _crafted(tmp_path / "their.ckpt", marker, "checkpoint")
    proc = run_cli("train", *QUICK, "logger=none", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_user_error(proc, str(ckpt), "refused")
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_a_planted_last_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    planted = _crafted(run_dir / "checkpoints" / "last.ckpt", marker, "checkpoint")
    proc = run_cli("train", *QUICK, "logger=none", f"hydra.run.dir={run_dir}")
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
