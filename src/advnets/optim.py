"""The released code's optimizer: pylearn2's classic momentum, with its max column norm constraint.

pylearn2 (``learning_rule.Momentum``) keeps a velocity ``v <- m v - lr g`` and steps ``p <- p + v`` with the
learning rate of *each* update. ``torch.optim.SGD`` keeps ``b <- m b + g`` and steps ``p <- p - lr b``: it applies
the *current* lr to the whole history, which drifts from pylearn2 once the lr decays every update (about 2e-3
relative after 3,000 updates at decay 1.001). ``ClassicMomentum`` is the pylearn2 form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from advnets.errors import UserError
from advnets.internals import foreach_add_, foreach_mul_


class ClassicMomentum(Optimizer):
    """``v <- m v - lr g; p <- p + v`` per parameter, then (optionally) pylearn2's max norm on weight rows.

    ``max_norm``: after each update, the incoming weights of every output unit (one maxout piece or one filter: a
    pylearn2 column) whose L2 norm exceeds it are scaled back to it, as pylearn2's ``MaxL2FilterNorm`` does
    (``scale = min(norm, max_norm) / max(norm, 1e-7)``). Which weights and which dim: :func:`norm_dims` of the
    net, given by :meth:`follow_layouts` (:func:`make_optimizer` does it); without a net, the rows of 2-d
    parameters (``nn.Linear``'s layout). Biases, of any shape, are left alone.
    """

    def __init__(
        self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, max_norm: float | None = None
    ) -> None:
        if max_norm is not None and not max_norm > 0:
            raise UserError(f"optimizer.max_norm={max_norm}; allowed: a number > 0, or null for none")
        super().__init__(params, {"lr": lr, "momentum": momentum, "max_norm": max_norm})
        self.norm_dims: dict[int, int] | None = None  # id(parameter) -> its output-unit dim (see follow_layouts)

    def follow_layouts(self, net: nn.Module) -> None:
        """Constrain the weights of ``net``'s layers on their output-unit dims (:func:`norm_dims`) and nothing else."""
        self.norm_dims = {id(p): dim for p, dim in norm_dims(net)}

    def _norm_dim(self, p: Tensor) -> int | None:
        if self.norm_dims is not None:
            return self.norm_dims.get(id(p))
        return 0 if p.ndim == 2 else None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocity = [self._velocity(p) for p in params]
            foreach_mul_(velocity, group["momentum"])
            foreach_add_(velocity, [p.grad for p in params], alpha=-group["lr"])
            foreach_add_(params, velocity)
            if group["max_norm"] is not None:
                for p in params:
                    dim = self._norm_dim(p)
                    if dim is not None:
                        clip_row_norms_(p, group["max_norm"], dim)
        return loss

    def _velocity(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["velocity"]


def norm_dims(net: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """The weights a max norm constrains and the dim of their output units: ``nn.Linear`` and ``nn.Conv2d``
    weights on dim 0 (out features / out channels), ``nn.ConvTranspose2d`` weights on dim 1 (their layout is
    [in, out, kh, kw]). Biases (an untied deconvolution bias too) and other parameters are not listed."""
    found = []
    for module in net.modules():
        if isinstance(module, nn.ConvTranspose2d):
            found.append((module.weight, 1))
        elif isinstance(module, nn.Linear | nn.Conv2d):
            found.append((module.weight, 0))
    return found


def make_optimizer(factory: Callable[[Iterable[Tensor]], Optimizer], net: nn.Module) -> Optimizer:
    """``factory(net.parameters())``; a :class:`ClassicMomentum` learns ``net``'s weight layouts for its max norm."""
    optimizer = factory(net.parameters())
    if isinstance(optimizer, ClassicMomentum):
        optimizer.follow_layouts(net)
    return optimizer


@torch.no_grad()
def clip_row_norms_(weight: Tensor, max_norm: float, dim: int = 0) -> None:
    """Scale each slice of ``weight`` along ``dim`` (one output unit's weights) whose L2 norm exceeds ``max_norm``
    back to ``max_norm``."""
    norms = weight.movedim(dim, 0).flatten(1).norm(dim=1)
    scale = norms.clamp(max=max_norm) / norms.clamp(min=1e-7)
    shape = [1] * weight.ndim
    shape[dim] = -1
    weight.mul_(scale.view(shape))
