"""On a CUDA device (``pytest -m gpu``; skipped where there is none): the updates, the Parzen protocol, training
and evaluation give what the CPU gives. scripts/device-check.sh runs these on a CUDA machine."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from advnets.data import load_digits
from advnets.evaluation import hardware
from advnets.sampling import sample_noise
from advnets.training import build

from conftest import compose_cfg, quiet_trainer, run_cli, train_quick
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


def _trainer(device: torch.device, **overrides) -> pl.Trainer:
    """A quiet single-device Trainer on ``device`` (the game's fast path: one device, no gradient scaler)."""
    if device.type == "cuda":
        return quiet_trainer(accelerator="gpu", devices=[device.index or 0], **overrides)
    return quiet_trainer(**overrides)


def _game(tmp_path: Path, *overrides: str):
    """The quickstart game with the paper's SGD and schedule, and a D drawn wide enough (weights in +-0.3, not the
    paper's 0.005) for G's gradient, which flows through D's weights, to move G visibly in a few updates."""
    cfg = compose_cfg(
        ["experiment=quickstart", "optimizer=paper_sgd", "optimizer.lr=0.1", "logger=none", *overrides], tmp_path
    )
    pl.seed_everything(0, verbose=False)
    datamodule, game, _ = build(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in game.discriminator.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.3)
    return datamodule, game


def _draw_on_the_cpu(game) -> None:
    """Make ``game`` draw every update's noise and dropout masks exactly as the CPU does (CPU generator, same keys),
    then move them to its device: a CUDA generator draws other numbers from the same seed."""
    keyed, cpu, shapes = game.rng, torch.Generator(), copy.deepcopy(game.discriminator).cpu()

    def rng(step: int | None = None) -> torch.Generator:
        return cpu.manual_seed(keyed(step).initial_seed())  # the game's own key for the update

    def sample_z(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = sample_noise(n, game.generator.noise_dim, game.noise, "cpu", generator or rng())
        return z.to(game.device)

    def masks(n: int, generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
        return [None if m is None else m.to(game.device) for m in shapes.masks(n, generator)]

    game.rng, game.sample_z, game.discriminator.masks = rng, sample_z, masks


def _deltas(game, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (p.detach().cpu() - start[k]) for k, p in game.named_parameters()}


def assert_same_steps(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], rtol: float) -> None:
    """Every parameter moved as in ``want``: ``|got - want| <= rtol |want|`` per tensor (a skipped or sign-flipped
    G step misses by 100% or 200%), and every net moved visibly (G too)."""
    for key, step in want.items():
        size = float(step.norm())
        assert size > 1e-4, (key, size)
        assert float((got[key] - step).norm()) <= rtol * size, (key, float((got[key] - step).norm()) / size)


@pytest.mark.parametrize("rule,k", [("joint", 1), ("joint", 4), ("alternating", 4)])
def test_updates_on_cuda_equal_the_cpu_given_the_same_noise_and_masks(tmp_path: Path, rule: str, k: int) -> None:
    """Training itself (``_one_update``, the fast path, the paper's lr decay and momentum ramp; K updates per step on
    the device) for 2 epochs = 24 updates, on the device and on the CPU (K = 1), with the same noise and masks.

    Tolerance: each tensor's total step within 1e-3 of the CPU's, relative. Rounding alone: perturbing every
    parameter by 1e-7 (relative) moves these steps by <= 4e-7 on the CPU."""
    runs = []
    for device, per_step in ((torch.device("cpu"), 1), (DEVICE, k)):
        folder = tmp_path / f"{device.type}-{per_step}"
        datamodule, game = _game(folder, f"game.update={rule}", f"game.updates_per_step={per_step}")
        start = {key: p.detach().clone() for key, p in game.named_parameters()}
        if runs:  # the device: the CPU's draws (on a CPU, what it would draw anyway)
            _draw_on_the_cpu(game)
        _trainer(device, max_epochs=2).fit(game, datamodule=datamodule)
        assert game.updates == 24 and game.device.type == device.type
        runs.append(_deltas(game, start))
    assert_same_steps(runs[1], runs[0], rtol=1e-3)


def test_reduce_overhead_equals_eager_after_50_updates(tmp_path: Path, monkeypatch) -> None:
    """CUDA graphs (game.compile=reduce-overhead) against the eager update, 50 updates (5 Lightning steps of 10)
    on the device; every tensor's step within 1e-3 of the eager one's, relative."""
    if DEVICE.type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device")
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "compile_threads", 1)
    runs = {}
    for mode in ("none", "reduce-overhead"):
        datamodule, game = _game(tmp_path / mode, f"game.compile={mode}", "game.updates_per_step=10")
        start = {key: p.detach().clone() for key, p in game.named_parameters()}
        _trainer(DEVICE, max_epochs=5, limit_train_batches=1).fit(game, datamodule=datamodule)
        assert game.updates == 50 and bool(game.losses_finite)
        runs[mode] = _deltas(game, start)
    assert_same_steps(runs["reduce-overhead"], runs["none"], rtol=1e-3)


class CountingScaler(torch.amp.GradScaler):
    """torch's gradient scaler, counting its scale updates."""

    def __init__(self, device: str) -> None:
        super().__init__(device)
        self.updates = 0

    def update(self, new_scale: float | None = None) -> None:
        self.updates += 1
        super().update(new_scale)


@pytest.mark.parametrize("rule", ["joint", "alternating"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_stays_finite(tmp_path: Path, precision: str, rule: str) -> None:
    """3 epochs (36 updates) under autocast: finite losses and weights, both nets moved; 16-mixed: one scale
    update per backward."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    if precision == "16-mixed" and DEVICE.type != "cuda":
        pytest.skip("16-mixed needs a CUDA device")
    datamodule, game = _game(tmp_path, f"game.update={rule}", "game.k=2")
    start = {key: p.detach().clone() for key, p in game.named_parameters()}
    scaler = CountingScaler(DEVICE.type) if precision == "16-mixed" else None
    plugins = [MixedPrecision(precision, DEVICE.type, scaler)]
    _trainer(DEVICE, max_epochs=3, plugins=plugins).fit(game, datamodule=datamodule)
    assert game.updates == 36 and bool(game.losses_finite)
    deltas = _deltas(game, start)
    assert all(bool(torch.isfinite(d).all()) for d in deltas.values())
    for net in ("generator", "discriminator"):
        assert max(float(d.norm()) for key, d in deltas.items() if key.startswith(net)) > 1e-4, net
    if scaler is not None:
        assert scaler.updates == (36 if rule == "joint" else 36 + 36 // 2)


def test_metric_suite_on_cuda_equals_the_cpu() -> None:
    """The whole suite on the same images on the device and on the CPU. Tolerances: FID, KID, the Inception-style
    score, class KL and the nearest-sample distance within 1e-4 relative (float32 features, no TF32); the counting
    metrics (precision, recall, density, coverage, class coverage) within 2 of the 297 samples, which rounding
    may carry across a k-NN radius or a class boundary."""
    from advnets.metrics.suite import SUITE, SuiteSettings, score_suite

    splits = load_digits(1200, 300)
    noise = 0.15 * torch.randn(297, 64, generator=torch.Generator().manual_seed(0))
    fake = (splits.train[:297] + noise).clamp(0, 1)
    settings = SuiteSettings(kid_subsets=20, kid_subset_size=200)
    cpu = score_suite(fake, splits.test, "digits", settings=settings)
    dev = score_suite(fake.to(DEVICE), splits.test.to(DEVICE), "digits", settings=settings)
    assert list(cpu) == list(dev) == list(SUITE)
    counting = {"precision", "recall", "density", "coverage", "class_coverage"}
    for name in SUITE:
        if name in counting:
            assert abs(dev[name] - cpu[name]) <= 2 / 297 + 1e-12, (name, dev[name], cpu[name])
        else:
            assert dev[name] == pytest.approx(cpu[name], rel=1e-4, abs=1e-6), name


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
