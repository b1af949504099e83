"""The released code's optimizer: pylearn2's classic momentum under a per-update lr decay, and its max norm."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from advnets.errors import UserError
from advnets.game import AdversarialGame
from advnets.nets import Discriminator
from advnets.nets.conv import DeconvGenerator
from advnets.optim import ClassicMomentum, clip_row_norms_
from advnets.schedules import PaperSchedule

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
