"""The released code's optimisation schedules: per-update learning-rate decay and an epoch momentum ramp."""

from __future__ import annotations

from torch.optim import Optimizer

from advnets.errors import UserError


class PaperSchedule:
    """lr <- max(lr / lr_decay, min_lr) after every update; momentum ramps linearly by epoch, then holds.

    momentum(e) = start + (final - start) * min(e / (saturate_epoch - 1), 1) for 0-indexed epoch e (pylearn2's
    MomentumAdjustor with start 1: saturate_epoch 1 is the final momentum from the first epoch on).
    The lr lives in the optimizers' param groups, so Lightning's checkpoint carries it across a resume;
    the momentum is a function of the (restored) epoch.
    """

    def __init__(
        self,
        lr_decay: float,
        min_lr: float,
        momentum_start: float,
        momentum_final: float,
        momentum_saturate_epoch: int,
    ) -> None:
        self.lr_decay, self.min_lr = lr_decay, min_lr
        self.momentum_start, self.momentum_final = momentum_start, momentum_final
        self.momentum_saturate_epoch = momentum_saturate_epoch
        if self.lr_decay < 1.0:
            raise UserError(f"optimizer.schedule.lr_decay={self.lr_decay}; allowed: >= 1 (a divisor)")
        if self.min_lr < 0:
            raise UserError(f"optimizer.schedule.min_lr={self.min_lr}; allowed: >= 0")
        if self.momentum_saturate_epoch < 1:
            raise UserError(f"optimizer.schedule.momentum_saturate_epoch={self.momentum_saturate_epoch}; allowed: >= 1")

    def momentum(self, epoch: int) -> float:
        span = self.momentum_saturate_epoch - 1
        ramp = min(epoch / span, 1.0) if span > 0 else 1.0
        return self.momentum_start + (self.momentum_final - self.momentum_start) * ramp

    def set_momentum(self, optimizer: Optimizer, epoch: int) -> None:
        for group in optimizer.param_groups:
            group["momentum"] = self.momentum(epoch)

    def decay_lr(self, optimizer: Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = max(group["lr"] / self.lr_decay, self.min_lr)
