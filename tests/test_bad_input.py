"""Bad input: one clear line naming the value, a non-zero exit, and nothing already written lost."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import QUICK, assert_user_error, cli_env, run_advnets, run_refused


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "wandb" not in p.parts and p.name != ".lock"  # the lock records who holds the folder
    }


@pytest.fixture
def finished_run(quick_run_copy: Path) -> Path:
    """A finished run of ``QUICK`` and ``trainer.max_epochs=2 logger=none`` (conftest.QUICK_RUN), this test's own."""
    return quick_run_copy


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["dataset=imagenet"], ["dataset/imagenet", "cifar10, digits, fashion_mnist, mnist, tfd"]),
        (["trainer=tpu"], ["trainer/tpu", "Available options", "cpu, ddp"]),
        (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "allowed: a finite number > 0"]),
        (["optimizer.lr=0"], ["lr=0", "allowed"]),
        (["optimizer.d_lr=nan"], ["optimizer.d_lr=nan", "allowed"]),
        (["dataset.batch_size=5000"], ["dataset.batch_size=5000", "1..1200"]),
        (["game.update=never"], ["game.update='never'", "joint, alternating"]),
        (["ckpt_path=/nonexistent/last.ckpt"], ["/nonexistent/last.ckpt", "does not exist"]),
    ],
)
def test_bad_values_get_one_line(tmp_path: Path, overrides: list[str], fragments: list[str]) -> None:
    proc = run_refused("train", *QUICK, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_override_key(tmp_path: Path) -> None:
    assert_user_error(run_refused("train", *QUICK, "trainer.max_epoch=3"), "trainer.max_epoch")


def test_a_dict_value_with_new_keys_says_how_to_add_them(tmp_path: Path) -> None:
    """A known key given a dict that brings new keys: how to add them, not a guess at another key."""
    proc = run_refused("train", *QUICK, "eval.extra_metrics={mean_gap:{_target_:my.MeanGap}}")
    assert_user_error(proc, "new keys cannot be added inside eval.extra_metrics", "+eval.extra_metrics.NAME=VALUE")
    assert "did you mean" not in proc.stderr


def test_a_key_the_chosen_class_may_not_take_says_so_beside_the_plus_hint(tmp_path: Path) -> None:
    proc = run_refused("train", *QUICK, "loss=hinge", "loss.g_loss=minimax")
    assert_user_error(proc, "+loss.g_loss=minimax, if advnets.losses.HingeLoss takes g_loss")


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_refused("train", *QUICK, f"hydra.run.dir={blocker / 'run'}")
    assert_user_error(proc, str(blocker / "run"), "Not a directory")
    assert blocker.read_text() == "not a folder"


def test_truncated_checkpoint_is_refused_and_nothing_is_lost(finished_run: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "half.ckpt"
    data = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    before = _digest(finished_run)
    proc = run_refused("train", *QUICK, f"ckpt_path={truncated}", f"hydra.run.dir={finished_run}")
    assert_user_error(proc, str(truncated), "truncated")
    assert _digest(finished_run) == before


def test_bad_value_in_an_existing_run_folder_loses_nothing(finished_run: Path) -> None:
    before = _digest(finished_run)
    proc = run_refused("train", *QUICK, "optimizer.lr=-1", f"hydra.run.dir={finished_run}")
    assert_user_error(proc, "lr=-1")
    assert "Error executing job" not in proc.stderr  # the mistake's one line is all Hydra's job says
    assert _digest(finished_run) == before


def test_missing_mnist_files(tmp_path: Path) -> None:
    proc = run_refused(
        "train",
        "experiment=paper_mnist",
        "dataset.download=false",
        f"dataset.root={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_user_error(proc, "MNIST files missing", str(tmp_path))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_mnist_files(tmp_path: Path, mnist_dir: str, damage: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(Path(mnist_dir) / "MNIST" / "raw", raw)
    victim = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(data[:-10])
    else:
        data[100] ^= 0xFF
        victim.write_bytes(data)
    proc = run_refused(
        "train", "experiment=paper_mnist", f"dataset.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_user_error(proc, "corrupt MNIST file", "t10k-labels-idx1-ubyte", "bytes" if damage == "truncate" else "md5")
    assert victim.read_bytes() == (data[:-10] if damage == "truncate" else data)  # not replaced by a download


def test_eval_refuses_a_checkpoint_of_another_shape(finished_run: Path, tmp_path: Path, mnist_dir: str) -> None:
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    proc = run_refused("evaluate", f"ckpt_path={ckpt}", "dataset=mnist", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, "64-d", "784-d")


def test_eval_refuses_a_missing_checkpoint(tmp_path: Path) -> None:
    proc = run_refused("evaluate", f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, "none.ckpt", "does not exist")
    assert not (tmp_path / "eval").exists()


def test_eval_refuses_a_thread_count_below_one(finished_run: Path, tmp_path: Path) -> None:
    proc = run_refused("evaluate", str(finished_run), "threads=0", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, "threads=0", "null or an integer >= 1")
    assert not (tmp_path / "eval").exists()


def _not_checkpoints(folder: Path) -> dict[str, Path]:
    """Files and a folder that are no checkpoint: an npz (a zip), a plain zip, a JSON, a folder without one."""
    folder.mkdir()
    np.savez(folder / "samples.npz", samples=np.zeros((2, 3)))
    with zipfile.ZipFile(folder / "weights.zip", "w") as archive:
        archive.writestr("weights/data.bin", b"0")
    (folder / "results.json").write_text('{"parzen_ll": 1.0}')
    (folder / "empty").mkdir()
    names = {"npz": "samples.npz", "zip": "weights.zip", "json": "results.json", "folder": "empty"}
    return {kind: folder / name for kind, name in names.items()}


EVAL_MISTAKES = {  # advnets-eval's arguments -> what its one line says
    "missing": ([], ["ckpt_path is missing", "advnets-eval RUN_FOLDER"]),
    "npz": (["{npz}"], ["samples.npz is not a checkpoint", "data.pkl"]),
    "zip": (["ckpt_path={zip}"], ["weights.zip is not a checkpoint", "data.pkl"]),
    "json": (["{json}", "eval.n_samples=100"], ["results.json is not a checkpoint", "not a file torch.save writes"]),
    "folder": (["{folder}"], ["empty is a folder without checkpoints/best.ckpt", "generator.pt"]),
    "two": (["{npz}", "{json}"], ["takes one checkpoint or run folder, got 2"]),
}


@pytest.mark.parametrize("mistake", sorted(EVAL_MISTAKES))
def test_eval_refuses_what_is_no_checkpoint_before_torch_loads(tmp_path: Path, mistake: str) -> None:
    """Each mistake: one line, exit 2, no outputs/eval/ folder, and torch never imported (the entry point run as
    the console script runs it, reporting at exit whether torch was loaded)."""
    paths = {name: str(path) for name, path in _not_checkpoints(tmp_path / "given").items()}
    args, fragments = EVAL_MISTAKES[mistake]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    probe = (
        "import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)); "
        "from advnets.cli.evaluate import main; sys.argv[0] = 'advnets-eval'; main()"
    )
    argv = [a.format(**paths) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", probe, *argv], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert_user_error(proc, *fragments)
    assert "torch loaded: False" in proc.stderr, proc.stderr[-2000:]
    assert list(cwd.iterdir()) == []  # no outputs/eval/<time>/ left behind


def test_a_second_job_on_a_folder_in_use_stops_with_one_line(finished_run: Path) -> None:
    before = _digest(finished_run)
    with open(finished_run / ".lock", "w") as held:  # this test process is the job holding the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        proc = run_refused("train", *QUICK, "trainer.max_epochs=2", "logger=none", f"hydra.run.dir={finished_run}")
    assert_user_error(proc, str(finished_run), "in use by another job", f"pid {os.getpid()}")
    assert _digest(finished_run) == before


def test_a_rerun_with_other_overrides_says_so(finished_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = _digest(run_dir)
    proc = run_refused("train", *QUICK, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={run_dir}")
    assert_user_error(proc, "started with other overrides", "+trainer.max_epochs=3, -trainer.max_epochs=2")
    assert _digest(run_dir) == before
    proc = run_advnets(
        "train", *QUICK, "trainer.max_epochs=3", "logger=none", "allow_config_change=true", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0 and "advnets: resuming from" in proc.stdout, proc.stderr[-2000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
