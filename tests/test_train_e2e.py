"""End to end through the real CLI: a quickstart run (files, W&B offline log read back), resume, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import QUICK, run_advnets, run_cli, train_quick
from wandb_log import config, history, offline_run_file, read_records, run_info


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    return train_quick(tmp_path_factory.mktemp("quick") / "run")


def test_quickstart_writes_the_run_folder(quick_run: Path) -> None:
    assert (quick_run / ".hydra" / "config.yaml").is_file()
    assert (quick_run / "checkpoints" / "last.ckpt").is_file()
    assert (quick_run / "checkpoints" / "best.ckpt").is_file()
    grids = sorted((quick_run / "samples").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_0002.png", "epoch_0004.png"]
    assert grids[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = (quick_run / "val_curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,step,val_parzen_ll,sigma" and len(curve) == 3
    results = json.loads((quick_run / "results.json").read_text())
    assert results["dataset"] == "digits" and results["n_samples"] == 300 and results["n_test"] == 297
    assert results["checkpoint"].endswith("best.ckpt")


def test_wandb_offline_run_holds_losses_and_images(quick_run: Path) -> None:
    records = read_records(offline_run_file(quick_run))
    rows = history(records)
    keys = set().union(*rows)
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/lr_g", "train/momentum"):
        assert key in keys, key
    assert "val/parzen_ll" in keys and "test/parzen_ll" in keys
    assert {"test/fid", "test/precision", "test_real_vs_real/fid", "test/nearest_sq_dist"} <= keys  # beyond Parzen
    images = [r for r in rows if r.get("samples/_type") == "images/separated"]
    assert len(images) == 2 and images[0]["samples/count"] == 1
    assert any(r.get("test/interpolation/_type") == "images/separated" for r in rows)  # Figure 3
    losses = [r["train/d_loss"] for r in rows if "train/d_loss" in r]
    assert all(0 < v < 10 for v in losses)
    # one x-axis unit, updates (12 an epoch; the joint rule takes 2 optimizer steps each): a value logged for
    # update u is at step u - 1, the epoch's own values at its last update
    steps = {key: [r["trainer/global_step"] for r in rows if key in r] for key in ("val/parzen_ll", "samples/count")}
    assert steps["val/parzen_ll"] == steps["samples/count"] == [2 * 12 - 1, 4 * 12 - 1]
    assert [r["trainer/global_step"] for r in rows if "test/parzen_ll" in r] == [4 * 12 - 1]
    assert max(r["trainer/global_step"] for r in rows) == 4 * 12 - 1
    assert [r["trainer/global_step"] for r in rows if "train/d_loss" in r][:2] == [9, 19]  # log_every_n_steps=10
    run = run_info(records)
    assert run.run_id == (quick_run / "wandb_id.txt").read_text().strip()
    cfg = config(records)
    assert cfg["dataset"]["name"] == "digits" and cfg["seed"] == 0


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_continues_the_paper_schedule_as_if_never_stopped(tmp_path: Path) -> None:
    """optimizer=paper_sgd with a fast decay and ramp, so that a resume that lost either would show."""
    common = [
        *QUICK,
        "logger=none",
        "evaluate=false",
        "callbacks.parzen_monitor.every_n_epochs=1",
        "optimizer=paper_sgd",
        "optimizer.lr=0.01",
        "optimizer.schedule.lr_decay=1.01",
        "optimizer.schedule.momentum_saturate_epoch=3",  # momentum 0.5, 0.6, 0.7 in epochs 0, 1, 2
    ]
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    _ok(run_advnets("train", *common, "trainer.max_epochs=2", f"hydra.run.dir={straight}"))
    _ok(run_advnets("train", *common, "trainer.max_epochs=1", f"hydra.run.dir={first}"))
    ckpt = first / "checkpoints" / "last.ckpt"
    _ok(run_advnets("train", *common, "trainer.max_epochs=2", f"ckpt_path={ckpt}", f"hydra.run.dir={resumed}"))
    a, b = _ckpt(straight / "checkpoints" / "last.ckpt"), _ckpt(resumed / "checkpoints" / "last.ckpt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["global_step"] == b["global_step"] == 2 * 2 * 12
    halfway = [group["param_groups"][0] for group in _ckpt(ckpt)["optimizer_states"]]
    assert [(g["lr"], g["momentum"]) for g in halfway] == [(pytest.approx(0.01 / 1.01**12, rel=1e-12), 0.5)] * 2
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        group_a, group_b = opt_a["param_groups"][0], opt_b["param_groups"][0]
        assert group_a["lr"] == group_b["lr"] == pytest.approx(0.01 / 1.01**24, rel=1e-12)  # decay went on
        assert group_a["momentum"] == group_b["momentum"] == pytest.approx(0.6)  # the ramp went on
        assert len(opt_a["state"]) > 0
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            assert torch.equal(state_a["velocity"], state_b["velocity"])
    # the validation curve continued in the resumed run's own folder from epoch 2
    assert (resumed / "val_curve.csv").read_text().splitlines()[1].startswith("2,")


_DDP_RUNS: dict[tuple[str, int, int], Path] = {}


def _ddp_run(tmp_path_factory, update: str, k: int, updates_per_step: int = 1) -> Path:
    """A 2-process gloo DDP quickstart run (cached per module: tests compare runs with each other)."""
    key = (update, k, updates_per_step)
    if key not in _DDP_RUNS:
        run_dir = tmp_path_factory.mktemp("ddp") / "run"
        proc = run_cli(
            "train",
            *QUICK,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=2",
            f"game.update={update}",
            f"game.k={k}",
            f"game.updates_per_step={updates_per_step}",
            "+callbacks.digest._target_=probes.ParamDigest",
            f"hydra.run.dir={run_dir}",
        )
        _ok(proc)
        _DDP_RUNS[key] = run_dir
    return _DDP_RUNS[key]


def _digests(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / f"params_rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("update,k,steps", [("joint", 1, 2 * 6 * 2), ("alternating", 2, 2 * 6 + 6)])
def test_ddp_two_cpu_processes_keep_identical_parameters(tmp_path_factory, update: str, k: int, steps: int) -> None:
    run_dir = _ddp_run(tmp_path_factory, update, k)
    ranks = _digests(run_dir)
    # rank zero evaluated alone after the other rank left: no metric may gather across ranks then
    results = json.loads((run_dir / "results.json").read_text())
    assert {"fid", "precision", "coverage"} <= results["metrics"].keys()
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["sum"] == ranks[1]["sum"] and ranks[0]["first"] == ranks[1]["first"]
    assert ranks[0]["abs_sum"] == ranks[1]["abs_sum"]
    # each rank sees half the data: 1200 images / (100 x 2) = 6 batches per epoch, 12 in 2 epochs;
    # joint: a G and a D step per batch; alternating k=2: a D step per batch, a G step every 2nd batch
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == steps
    records = read_records(offline_run_file(run_dir))
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1  # rank zero only
    assert any("train/d_loss" in row for row in history(records))


def test_ddp_with_several_updates_per_step_equals_one(tmp_path_factory) -> None:
    """game.updates_per_step=4 under DDP (every update through manual_backward): K = 1's parameters exactly."""
    one, four = (
        _digests(_ddp_run(tmp_path_factory, "alternating", 2)),
        _digests(_ddp_run(tmp_path_factory, "alternating", 2, 4)),
    )
    assert four[0] == {**one[0]} and four[1] == {**one[1]}
    assert four[0]["sum"] == four[1]["sum"]
