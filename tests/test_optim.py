"""The released code's optimizer: pylearn2's classic momentum under a per-update lr decay, and its max norm."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from advnets.errors import UserError
from advnets.game import AdversarialGame
from advnets.nets import Discriminator
from advnets.nets.conv import DeconvGenerator
from advnets.optim import ClassicMomentum, clip_row_norms_
from advnets.schedules import PaperSchedule
from advnets.training import build

from conftest import compose_cfg, quiet_trainer

DECAY, UPDATES = 1.001, 3000


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    x = torch.randn(64, 8, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    return net, x, y


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, i: int) -> torch.Tensor:
    rows = slice((i * 16) % 64, (i * 16) % 64 + 16)  # a different minibatch each update
    return ((net(x[rows]) - y[rows]) ** 2).mean()


def _pylearn2_by_hand(lr: float, momentum_at) -> list[torch.Tensor]:
    """learning_rule.Momentum written out: v = m v - lr g; p += v; then ExponentialDecay divides lr."""
    net, x, y = _problem()
    params = list(net.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for i in range(UPDATES):
        grads = torch.autograd.grad(_loss(net, x, y, i), params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads, strict=True):
                v.copy_(momentum_at(i) * v - lr * g)
                p.add_(v)
        lr = max(lr / DECAY, 1e-6)
    return [p.detach().clone() for p in params]


def _with_optimizer(make, momentum_at) -> list[torch.Tensor]:
    net, x, y = _problem()
    opt = make(net.parameters())
    schedule = PaperSchedule(DECAY, 1e-6, 0.5, 0.7, 250)
    for i in range(UPDATES):
        for group in opt.param_groups:
            group["momentum"] = momentum_at(i)
        opt.zero_grad()
        _loss(net, x, y, i).backward()
        opt.step()
        schedule.decay_lr(opt)
    return [p.detach().clone() for p in net.parameters()]


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float((p - q).norm() ** 2) for p, q in zip(a, b, strict=True)) ** 0.5
    return num / sum(float(q.norm() ** 2) for q in b) ** 0.5


def test_classic_momentum_equals_pylearn2_over_3000_decaying_updates() -> None:
    def momentum_at(i: int) -> float:  # a ramp too, as MomentumAdjustor sets it
        return 0.5 + 0.2 * min(i / 1500, 1.0)

    reference = _pylearn2_by_hand(0.05, momentum_at)
    ours = _with_optimizer(lambda ps: ClassicMomentum(ps, lr=0.05, momentum=0.5), momentum_at)
    torch_sgd = _with_optimizer(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5), momentum_at)
    assert _rel(ours, reference) < 1e-12
    # not vacuous: torch's SGD (the current lr applied to the whole buffer) drifts on the same problem
    assert _rel(torch_sgd, reference) > 1e-4
    assert _rel(reference, [q.detach() for q in _problem()[0].parameters()]) > 0.1  # and training moved far


def test_max_norm_scales_only_rows_above_the_limit() -> None:
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clip_row_norms_(w, 1.9365)
    torch.testing.assert_close(w[0].norm(), torch.tensor(1.9365))
    torch.testing.assert_close(w[0] / w[0].norm(), torch.tensor([0.6, 0.8]))
    assert torch.equal(w[1], torch.tensor([0.3, 0.4])) and torch.equal(w[2], torch.zeros(2))


def test_max_norm_holds_after_every_step_and_spares_biases() -> None:
    layer = nn.Linear(50, 10)
    opt = ClassicMomentum(layer.parameters(), lr=10.0, momentum=0.5, max_norm=0.5)
    for _ in range(3):
        opt.zero_grad()
        (layer(torch.ones(4, 50)) ** 2).sum().backward()
        opt.step()
    assert float(layer.weight.detach().norm(dim=1).max()) <= 0.5 + 1e-6
    assert float(layer.bias.detach().abs().max()) > 0.5  # the bias is not constrained


def _unit_norms(weight: torch.Tensor, dim: int) -> torch.Tensor:
    return weight.detach().movedim(dim, 0).flatten(1).norm(dim=1)


def test_max_norm_follows_each_layout_and_spares_the_untied_deconv_bias() -> None:
    """Through the game's optimizers: Linear rows, a ConvTranspose2d's output channels (dim 1 of [in, out, kh, kw]),
    and never the 3-d untied deconvolution bias."""

    def step(max_norm: float | None) -> DeconvGenerator:
        torch.manual_seed(0)
        G = DeconvGenerator(
            4, [18], "relu", channels=2, side=3, image_shape=[3, 8, 8], kernel=4, stride=2, init_range=1.0
        )
        D = Discriminator(192, [8], 2, 0.1, 1.0, 1.0)
        opt = partial(ClassicMomentum, lr=5.0, momentum=0.5, max_norm=max_norm)
        g_opt, _ = AdversarialGame(G, D, opt, opt).configure_optimizers()
        (G(torch.ones(5, 4)) ** 2).sum().backward()
        g_opt.step()
        return G

    free, held = step(None), step(0.5)
    assert float(_unit_norms(free.deconv.weight, 1).min()) > 0.5 and float(_unit_norms(free.deconv_bias, 0).min()) > 0.5
    assert float(_unit_norms(held.deconv.weight, 1).max()) <= 0.5 + 1e-6  # each output channel's filter
    assert float(_unit_norms(held.deconv.weight, 0).max()) > 0.5  # not the input channels' slices
    assert float(_unit_norms(held.body[0].weight, 0).max()) <= 0.5 + 1e-6  # each hidden unit's row
    assert torch.equal(held.deconv_bias, free.deconv_bias) and torch.equal(held.body[0].bias, free.body[0].bias)


def test_a_bad_max_norm_is_one_clear_line() -> None:
    with pytest.raises(UserError, match=r"optimizer.max_norm=-1"):
        ClassicMomentum([torch.zeros(1, requires_grad=True)], lr=0.1, max_norm=-1)


def pylearn2_momentum(epochs: int, init: float, final: float, saturate: int, start: int = 1) -> list[float]:
    """The momentum of each (0-indexed) epoch as the released code set it: pylearn2's ``Train.main_loop`` calls
    every extension's ``on_monitor`` once before the first epoch and once after each; ``MomentumAdjustor`` (here
    ``start: 1``, as ``mnist.yaml`` has it) counts those calls and sets ``current_momentum()`` for the next epoch."""
    out, count = [], 0
    for _ in range(epochs):
        count += 1  # the on_monitor call before this epoch
        width = saturate - start
        if width == 0:
            out.append(final if count >= start else init)
            continue
        alpha = min(max((count - start) / width, 0.0), 1.0)
        out.append(init * (1 - alpha) + alpha * final)
    return out


@pytest.mark.parametrize("saturate", [1, 2, 3, 250])
def test_momentum_ramp_is_pylearn2s_momentum_adjustor_epoch_by_epoch(saturate: int) -> None:
    schedule = PaperSchedule(1.000004, 1e-6, 0.5, 0.7, saturate)
    epochs = 2 * saturate + 5
    reference = pylearn2_momentum(epochs, 0.5, 0.7, saturate)
    assert [schedule.momentum(e) for e in range(epochs)] == pytest.approx(reference, abs=1e-12)


def test_momentum_ramp_ends_where_the_paper_run_saturates() -> None:
    """``mnist.yaml`` (start 1, saturate 250): 0.5 in epoch 0, one 249th of the way in epoch 1, 0.7 from epoch 249
    (the 250th) on, and not before."""
    schedule = PaperSchedule(1.000004, 1e-6, 0.5, 0.7, 250)
    assert schedule.momentum(0) == 0.5
    assert schedule.momentum(1) == pytest.approx(0.5 + 0.2 / 249, abs=1e-15)
    assert schedule.momentum(248) == pytest.approx(0.7 - 0.2 / 249, abs=1e-15) and schedule.momentum(248) < 0.7
    assert all(math.isclose(schedule.momentum(e), 0.7, abs_tol=1e-15) for e in (249, 250, 251, 1000))


class MomentumSeen(pl.Callback):
    """The momentum each optimizer holds in the first update of every epoch (after the game's epoch start)."""

    def __init__(self) -> None:
        self.seen: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            moms = [g["momentum"] for opt in trainer.optimizers for g in opt.param_groups]
            self.seen[trainer.current_epoch] = moms


def _fit(tmp_path: Path, epochs: int, ckpt: Path | None = None) -> MomentumSeen:
    cfg = [
        "experiment=quickstart",
        "optimizer=paper_sgd",
        "logger=none",
        "optimizer.schedule.momentum_saturate_epoch=4",
    ]
    datamodule, game, _ = build(compose_cfg(cfg, tmp_path))
    seen = MomentumSeen()
    trainer = quiet_trainer(max_epochs=epochs, limit_train_batches=1, callbacks=[seen], default_root_dir=tmp_path)
    trainer.fit(game, datamodule=datamodule, ckpt_path=ckpt)
    if ckpt is None:
        trainer.save_checkpoint(tmp_path / "after.ckpt")
    return seen


def test_training_sets_each_epochs_momentum_also_after_a_resume(tmp_path: Path) -> None:
    """Through fits of the game: the optimizers hold the released code's momentum in every epoch (ramp saturating
    at epoch 4: 0.5, 0.5667, 0.6333, 0.7), and a run resumed after epoch 2 goes on with epochs 2 and 3's values."""
    reference = pylearn2_momentum(4, 0.5, 0.7, 4)
    whole = _fit(tmp_path / "whole", 4)
    assert sorted(whole.seen) == [0, 1, 2, 3]
    for epoch, moms in whole.seen.items():
        assert moms == pytest.approx([reference[epoch]] * len(moms), abs=1e-12), epoch
    _fit(tmp_path / "resumed", 2)
    resumed = _fit(tmp_path / "resumed", 4, ckpt=tmp_path / "resumed" / "after.ckpt")
    assert sorted(resumed.seen) == [2, 3]
    for epoch, moms in resumed.seen.items():
        assert moms == pytest.approx([reference[epoch]] * len(moms), abs=1e-12), epoch
