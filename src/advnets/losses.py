"""The game's losses, chosen by the ``loss`` config group (``conf/loss/``): D's loss on D's logits for real and
generated data, G's loss on D's logits for generated data, and an optional R1 penalty on real data.

``loss=paper`` (the default) is the released code's; ``loss=hinge`` the hinge loss; ``loss.r1_gamma=G`` adds R1
to any of them. One's own: a subclass of ``Loss`` and ``loss._target_=mypkg.MyLoss`` (see docs/extending.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from advnets.choices import GLoss
from advnets.errors import UserError


def d_loss_fn(logit_real: Tensor, logit_fake: Tensor) -> Tensor:
    """The released code's D loss: 0.5 * [-log D(x) - log(1 - D(G(z)))], as softplus of logits."""
    return 0.5 * (F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean())


def g_loss_fn(logit_fake: Tensor, kind: GLoss) -> Tensor:
    """``non_saturating``: -log D(G(z)) (section 3 of the paper); ``minimax``: log(1 - D(G(z)))."""
    if kind == "non_saturating":
        return F.softplus(-logit_fake).mean()
    if kind == "minimax":
        return -F.softplus(logit_fake).mean()
    raise UserError(f"loss.g_loss={kind!r}; allowed: one of non_saturating, minimax")


class Loss:
    """A loss of the game: ``d_loss`` and ``g_loss`` (each a scalar to minimise), and R1 when ``r1_gamma > 0``.

    Both update rules call ``d_loss`` and ``g_loss`` with D's logits (one per example); the game adds
    ``penalty`` to D's loss, with ``x_real`` set to require its gradient before D's forward pass.
    """

    def __init__(self, r1_gamma: float = 0.0) -> None:
        if not (isinstance(r1_gamma, int | float) and math.isfinite(r1_gamma) and r1_gamma >= 0):
            raise UserError(f"loss.r1_gamma={r1_gamma}; allowed: a finite number >= 0")
        self.r1_gamma = float(r1_gamma)

    def d_loss(self, logit_real: Tensor, logit_fake: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, logit_fake: Tensor) -> Tensor:
        raise NotImplementedError

    def penalty(self, x_real: Tensor, logit_real: Tensor) -> Tensor:
        """R1 (Mescheder et al., 2018): gamma/2 * E[||grad_x D(x)||^2] on real data, D(x) the logit; its graph is
        kept (``create_graph``), so its gradient reaches D's parameters."""
        (grad,) = torch.autograd.grad(logit_real.sum(), x_real, create_graph=True)
        return 0.5 * self.r1_gamma * grad.pow(2).flatten(1).sum(1).mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class PaperLoss(Loss):
    """The released code's losses: D's ``d_loss_fn``; G's ``g_loss_fn`` of kind ``g_loss``."""

    def __init__(self, g_loss: GLoss = "non_saturating", r1_gamma: float = 0.0) -> None:
        super().__init__(r1_gamma)
        if g_loss not in ("non_saturating", "minimax"):
            raise UserError(f"loss.g_loss={g_loss!r}; allowed: one of non_saturating, minimax")
        self.g_kind = g_loss

    def d_loss(self, logit_real: Tensor, logit_fake: Tensor) -> Tensor:
        return d_loss_fn(logit_real, logit_fake)

    def g_loss(self, logit_fake: Tensor) -> Tensor:
        return g_loss_fn(logit_fake, self.g_kind)


class HingeLoss(Loss):
    """The hinge loss (Lim & Ye, 2017; Miyato et al., 2018): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],
    G minimises -E[D(G(z))]; D(.) the logit."""

    def d_loss(self, logit_real: Tensor, logit_fake: Tensor) -> Tensor:
        return F.relu(1 - logit_real).mean() + F.relu(1 + logit_fake).mean()

    def g_loss(self, logit_fake: Tensor) -> Tensor:
        return -logit_fake.mean()
