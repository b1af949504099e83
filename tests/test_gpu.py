"""On a CUDA device (``pytest -m gpu``; skipped where there is none): the updates, the Parzen protocol, training
and evaluation give what the CPU gives. scripts/device-check.sh runs these on a lent GPU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from advnets.data import load_digits
from advnets.evaluation import hardware
from advnets.training import build

from conftest import compose_cfg, run_cli, train_quick
from wandb_log import history, offline_run_file, read_records

try:  # the metrics package may hold the protocol
    from advnets.metrics.parzen import parzen_protocol
except ImportError:
    from advnets.parzen import parzen_protocol

DEVICE = torch.device(os.environ.get("ADVNETS_GPU_TESTS_DEVICE", "cuda"))
"""``cuda``; scripts/device-check.sh --dry sets ``cpu`` to run these tests' own logic on a machine without one."""
TRAINER = "trainer=gpu" if DEVICE.type == "cuda" else "trainer=cpu"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device (scripts/device-check.sh)"
    ),
]


@pytest.fixture(autouse=True)
def exact_matmul():
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32: CPU and GPU then differ by rounding only
    yield
    torch.set_float32_matmul_precision(before)


def _game(tmp_path, rule: str):
    overrides = ["experiment=quickstart", "optimizer=paper_sgd", "optimizer.lr=0.1", "logger=none"]
    if rule == "alternating":
        overrides.append("game.update=alternating")
    torch.manual_seed(0)
    _, game, _ = build(compose_cfg(overrides, tmp_path))
    return game


@pytest.mark.parametrize("rule", ["joint", "alternating"])
def test_updates_on_cuda_equal_the_cpu_given_the_same_noise_and_masks(tmp_path, rule: str) -> None:
    games = {dev: _game(tmp_path, rule).to(dev) for dev in ("cpu", DEVICE)}
    opts = {
        dev: (g.g_optimizer(g.generator.parameters()), g.d_optimizer(g.discriminator.parameters()))
        for dev, g in games.items()
    }
    data = load_digits(1200, 300).train
    rng = torch.Generator().manual_seed(1)
    D = games["cpu"].discriminator
    for step in range(10):
        x = data[step * 100 : (step + 1) * 100]
        z = torch.rand(100, 16, generator=rng) * 2 - 1
        masks = [D.masks(100, rng), D.masks(100, rng), D.masks(100, rng)]
        g_z = torch.rand(100, 16, generator=rng) * 2 - 1
        for dev, game in games.items():
            g_opt, d_opt = opts[dev]
            m = [[None if t is None else t.to(dev) for t in ms] for ms in masks]
            if rule == "joint":
                loss, _ = game._joint_losses(x.to(dev), z.to(dev), m[0], m[1])
                g_opt.zero_grad(), d_opt.zero_grad()
                loss.backward()
                d_opt.step(), g_opt.step()
            else:
                d_loss, _ = game._d_losses(x.to(dev), z.to(dev), m[0], m[1])
                d_opt.zero_grad()
                d_loss.backward()
                d_opt.step()
                g_loss = game._g_losses(g_z.to(dev), m[2])
                g_opt.zero_grad()
                g_loss.backward()
                g_opt.step()
    cpu, gpu = games["cpu"].state_dict(), games[DEVICE].state_dict()
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-4, atol=1e-6, msg=key)
    start = _game(tmp_path, rule).state_dict()
    moved = max(float((cpu[k] - start[k]).abs().max()) for k in cpu)
    assert moved > 1e-4  # the updates did something


def test_parzen_float64_on_cuda_equals_the_cpu() -> None:
    splits = load_digits(1200, 300)
    samples = splits.train[:1000] + 0.05 * torch.randn(1000, 64, generator=torch.Generator().manual_seed(0))
    cpu = parzen_protocol(samples, splits.valid, splits.test, precision="float64")
    gpu = parzen_protocol(samples.to(DEVICE), splits.valid.to(DEVICE), splits.test.to(DEVICE), precision="float64")
    assert gpu.sigma == cpu.sigma
    assert abs(gpu.log_likelihood - cpu.log_likelihood) < 1e-9, (gpu.log_likelihood, cpu.log_likelihood)
    assert abs(gpu.standard_error - cpu.standard_error) < 1e-9


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory) -> Path:
    return train_quick(tmp_path_factory.mktemp("gpu") / "run", TRAINER, "game.updates_per_step=4")


def test_quickstart_on_the_gpu_end_to_end(gpu_run: Path) -> None:
    assert (gpu_run / "checkpoints" / "best.ckpt").is_file() and (gpu_run / "checkpoints" / "last.ckpt").is_file()
    results = json.loads((gpu_run / "results.json").read_text())
    assert results["hardware"].startswith(hardware(DEVICE).split(",")[0])  # evaluated on the GPU
    rows = history(read_records(offline_run_file(gpu_run)))
    losses = [r["train/d_loss"] for r in rows if "train/d_loss" in r]
    assert losses and all(0 < v < 10 for v in losses)
    assert any("test/parzen_ll" in r for r in rows)


def test_bf16_mixed_trains_and_logs(tmp_path: Path) -> None:
    run = train_quick(tmp_path / "bf16", TRAINER, "trainer.precision=bf16-mixed", "evaluate=false")
    rows = history(read_records(offline_run_file(run)))
    losses = [r["train/d_loss"] for r in rows if "train/d_loss" in r]
    assert len(losses) >= 2 and all(0 < v < 10 for v in losses)
    assert any("val/parzen_ll" in r for r in rows)


def test_eval_on_cuda_matches_the_cpu(gpu_run: Path, tmp_path: Path) -> None:
    ckpt = gpu_run / "checkpoints" / "best.ckpt"
    out = {}
    for device in ("cpu", str(DEVICE)):
        proc = run_cli(
            "evaluate",
            f"ckpt_path={ckpt}",
            "eval.n_samples=2000",
            f"device={device}",
            f"hydra.run.dir={tmp_path / device}",
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[device] = json.loads((tmp_path / device / "results.json").read_text())
    gpu = out[str(DEVICE)]
    assert gpu["hardware"] == hardware(DEVICE) and "CPU" in out["cpu"]["hardware"]
    z_cpu = np.load(tmp_path / "cpu" / "samples.npz")["z"]
    z_gpu = np.load(tmp_path / str(DEVICE) / "samples.npz")["z"]
    assert (z_cpu == z_gpu).all()  # the same noise, drawn on the CPU from the recorded seed
    assert gpu["sigma"] == out["cpu"]["sigma"]
    assert abs(gpu["parzen_ll"] - out["cpu"]["parzen_ll"]) < 1e-3  # G in float32 on two devices
