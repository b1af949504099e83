"""A loss of one's own: the least-squares GAN loss (Mao et al., 2017), on D's logits.

What advnets asks of a loss: a subclass of ``advnets.losses.Loss`` with ``d_loss(logit_real, logit_fake)`` and
``g_loss(logit_fake)``, each a scalar to minimise; ``r1_gamma`` (the R1 penalty on real data) comes with the base."""

from __future__ import annotations

from torch import Tensor

from advnets.losses import Loss


class LeastSquaresLoss(Loss):
    """D minimises 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]; G minimises 1/2 E[(D(G(z)) - 1)^2] (the 0-1 coding)."""

    def d_loss(self, logit_real: Tensor, logit_fake: Tensor) -> Tensor:
        return 0.5 * ((logit_real - 1).pow(2).mean() + logit_fake.pow(2).mean())

    def g_loss(self, logit_fake: Tensor) -> Tensor:
        return 0.5 * (logit_fake - 1).pow(2).mean()
