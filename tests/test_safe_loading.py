"""Safe loading: a file that would run code when unpickled is refused by advnets-eval and by resume.

The crafted files would create a marker file when unpickled (``builtins.open(marker, "w")``); every test checks
that the refusal is one line and that the marker never appears."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from advnets.errors import UserError
from advnets.evaluation import load_generator_weights

from conftest import QUICK, assert_user_error, run_cli


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
