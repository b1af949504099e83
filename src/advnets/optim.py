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
from torch import Tensor
from torch.optim import Optimizer

from advnets.errors import UserError


class ClassicMomentum(Optimizer):
    """``v <- m v - lr g; p <- p + v`` per parameter, then (optionally) pylearn2's max norm on weight rows.

    ``max_norm``: after each update, every row of a weight (the incoming weights of one output unit, or one
    maxout piece: a pylearn2 column) whose L2 norm exceeds it is scaled back to it, as pylearn2's
    ``MaxL2FilterNorm`` does (``scale = min(norm, max_norm) / max(norm, 1e-7)``); 1-d parameters (biases) are
    left alone. Meant for ``nn.Linear`` / ``nn.Conv2d`` weights (output units on dim 0).
    """

    def __init__(
        self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, max_norm: float | None = None
    ) -> None:
        if max_norm is not None and not max_norm > 0:
            raise UserError(f"optimizer.max_norm={max_norm}; allowed: a number > 0, or null for none")
        super().__init__(params, {"lr": lr, "momentum": momentum, "max_norm": max_norm})

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
            torch._foreach_mul_(velocity, group["momentum"])
            torch._foreach_add_(velocity, [p.grad for p in params], alpha=-group["lr"])
            torch._foreach_add_(params, velocity)
            if group["max_norm"] is not None:
                for p in params:
                    if p.ndim >= 2:
                        clip_row_norms_(p, group["max_norm"])
        return loss

    def _velocity(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["velocity"]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Also reads a ``torch.optim.SGD`` state (an older checkpoint): its last step was ``-lr * buffer``."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group.setdefault("max_norm", None)
            for p in group["params"]:
                state = self.state.get(p, {})
                if "momentum_buffer" in state and "velocity" not in state:
                    buffer = state.pop("momentum_buffer")
                    if buffer is not None:
                        state["velocity"] = buffer.mul(-group["lr"])


@torch.no_grad()
def clip_row_norms_(weight: Tensor, max_norm: float) -> None:
    """Scale each row (dim 0 slice) of ``weight`` whose L2 norm exceeds ``max_norm`` back to ``max_norm``."""
    norms = weight.flatten(1).norm(dim=1)
    scale = norms.clamp(max=max_norm) / norms.clamp(min=1e-7)
    weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))
