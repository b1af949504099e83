"""The two-player minimax game as a LightningModule with manual optimization.

``update="joint"`` is the released code's rule: one forward on one batch and one z; D's gradient comes from the
D loss and G's from the G loss, both against D's pre-update weights, with one dropout mask for the fake batch;
then both optimizers step. It takes a single backward: the D loss sees the fake batch detached from G, the G
loss sees D through detached parameters, so ``manual_backward(d_loss + g_loss)`` gives each net exactly its
own gradient (and DDP syncs both in its one reduction).

``update="alternating"`` is Algorithm 1 of the paper: every batch is one D step; after every k-th D step, one G
step on fresh noise.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call
from torch.optim import Optimizer

from advnets.errors import UserError
from advnets.nets import Discriminator, Generator
from advnets.schedules import PaperSchedule

UPDATES = ("joint", "alternating")
G_LOSSES = ("non_saturating", "minimax")
NOISES = ("uniform", "gaussian")


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{key}={value!r}; allowed: {', '.join(allowed)}")


def d_loss_fn(logit_real: Tensor, logit_fake: Tensor) -> Tensor:
    """The released code's D loss: 0.5 * [-log D(x) - log(1 - D(G(z)))], as softplus of logits."""
    return 0.5 * (F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean())


def g_loss_fn(logit_fake: Tensor, kind: str) -> Tensor:
    """``non_saturating``: -log D(G(z)) (section 3 of the paper); ``minimax``: log(1 - D(G(z)))."""
    if kind == "non_saturating":
        return F.softplus(-logit_fake).mean()
    return -F.softplus(logit_fake).mean()


def sample_noise(n: int, dim: int, kind: str, device: torch.device, generator: torch.Generator) -> Tensor:
    """``uniform``: U(-sqrt 3, sqrt 3) (unit variance, the released code); ``gaussian``: N(0, 1)."""
    if kind == "uniform":
        return (torch.rand(n, dim, device=device, generator=generator) * 2.0 - 1.0) * math.sqrt(3.0)
    return torch.randn(n, dim, device=device, generator=generator)


def _concat_masks(a: list[Tensor | None], b: list[Tensor | None]) -> list[Tensor | None]:
    return [None if x is None else torch.cat([x, y]) for x, y in zip(a, b, strict=True)]


class AdversarialGame(pl.LightningModule):
    """G and D, their optimizers, and the paper's update rules; the nets and optimizers come from config."""

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        g_optimizer: partial[Optimizer],
        d_optimizer: partial[Optimizer],
        schedule: PaperSchedule | None = None,
        update: str = "joint",
        k: int = 1,
        g_loss: str = "non_saturating",
        noise: str = "uniform",
        seed: int = 0,
        n_fixed_samples: int = 100,
    ) -> None:
        super().__init__()
        _check_choice("game.update", update, UPDATES)
        _check_choice("game.g_loss", g_loss, G_LOSSES)
        _check_choice("game.noise", noise, NOISES)
        if k < 1:
            raise UserError(f"game.k={k}; allowed: a positive integer")
        for name, opt in (("generator", g_optimizer), ("discriminator", d_optimizer)):
            lr = opt.keywords.get("lr", 1.0)
            if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
                raise UserError(f"optimizer.{name}.lr={lr}; allowed: a finite number > 0")
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer, self.schedule = g_optimizer, d_optimizer, schedule
        self.update, self.k, self.g_loss, self.noise, self.seed = update, k, g_loss, noise, seed
        fixed = torch.Generator().manual_seed(seed)
        self.register_buffer("fixed_z", sample_noise(n_fixed_samples, generator.noise_dim, noise, "cpu", fixed))
        self._rng: torch.Generator | None = None
        self.register_buffer("losses_finite", torch.tensor(True), persistent=False)
        self.diverged_at: int | None = None

    # -- randomness: a counter-based stream, so a resumed run and every DDP rank draw reproducibly ----------
    def rng(self) -> torch.Generator:
        """The generator for this update's noise and dropout, seeded by (seed, rank, global step)."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
        key = (self.seed * 1_000_003 + self.global_rank) * 10_000_019 + self.global_step
        return self._rng.manual_seed(key % (2**63))

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return sample_noise(n, self.generator.noise_dim, self.noise, self.device, generator or self.rng())

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    # -- the game ---------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[Optimizer]:
        return [
            self.g_optimizer(self.generator.parameters()),
            self.d_optimizer(self.discriminator.parameters()),
        ]

    def on_train_epoch_start(self) -> None:
        if self.schedule is not None:
            for opt in self.optimizers():
                self.schedule.set_momentum(opt.optimizer, self.current_epoch)

    def _g_logits(self, fake: Tensor, masks: list[Tensor | None]) -> Tensor:
        """D's logits for G's loss: gradient flows into ``fake`` only, never into D's parameters."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (fake,), {"masks": masks})

    def _step(self, opt: Any) -> None:
        opt.step()
        if self.schedule is not None:
            self.schedule.decay_lr(opt.optimizer)

    def training_step(self, batch: Tensor) -> None:
        g_opt, d_opt = self.optimizers()
        rng = self.rng()
        n = batch.shape[0]
        with torch.set_grad_enabled(self.update == "joint"):  # alternating: the D step needs no graph in G
            fake = self.generator(self.sample_z(n, rng))
        masks_real = self.discriminator.masks(n, rng)
        masks_fake = self.discriminator.masks(n, rng)
        logits = self.discriminator(torch.cat([batch, fake.detach()]), _concat_masks(masks_real, masks_fake))
        logit_real, logit_fake = logits[:n], logits[n:]
        d_loss = d_loss_fn(logit_real, logit_fake)
        if self.update == "joint":
            g_loss = g_loss_fn(self._g_logits(fake, masks_fake), self.g_loss)
            g_opt.zero_grad(set_to_none=True)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss + g_loss)
            self._step(d_opt)
            self._step(g_opt)
        else:
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self._step(d_opt)
            g_loss = None
            if (self.trainer.fit_loop.epoch_loop.batch_progress.total.ready) % self.k == 0:
                g_rng = self.rng()  # global_step moved on: fresh noise and masks for the G step
                g_fake = self.generator(self.sample_z(n, g_rng))
                g_loss = g_loss_fn(self._g_logits(g_fake, self.discriminator.masks(n, g_rng)), self.g_loss)
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                self._step(g_opt)
        self._log_step(d_loss, g_loss, logit_real, logit_fake, g_opt, d_opt)
        finite = torch.isfinite(d_loss) if g_loss is None else torch.isfinite(d_loss) & torch.isfinite(g_loss)
        self.losses_finite &= finite  # no host sync per step; checked once per epoch

    def on_train_epoch_end(self) -> None:
        """Stop a diverged game (a non-finite loss this epoch) with one clear line, instead of training on NaN.

        The decision is reduced across DDP ranks (any rank diverged: every rank stops at this epoch), so a NaN
        on one rank never leaves the others waiting in a collective."""
        diverged = self.trainer.strategy.reduce_boolean_decision(not bool(self.losses_finite), all=False)
        if diverged:
            self.diverged_at = self.current_epoch + 1
            self.trainer.callback_metrics["run/diverged_at_epoch"] = torch.tensor(float(self.diverged_at))
            if self.trainer.is_global_zero:
                print(f"advnets: training diverged in epoch {self.diverged_at} (non-finite loss); stopping this run")
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """The run's facts in ``callback_metrics``, which ``ddp_spawn`` hands back to the launching process."""
        self.trainer.callback_metrics["run/epochs"] = torch.tensor(float(self.trainer.current_epoch))
        self.trainer.callback_metrics["run/global_step"] = torch.tensor(float(self.trainer.global_step))

    def _log_step(
        self,
        d_loss: Tensor,
        g_loss: Tensor | None,
        logit_real: Tensor,
        logit_fake: Tensor,
        g_opt: Any,
        d_opt: Any,
    ) -> None:
        metrics = {
            "train/d_loss": d_loss.detach(),
            "train/d_real": torch.sigmoid(logit_real.detach()).mean(),
            "train/d_fake": torch.sigmoid(logit_fake.detach()).mean(),
            "train/lr_g": g_opt.optimizer.param_groups[0]["lr"],
            "train/lr_d": d_opt.optimizer.param_groups[0]["lr"],
            "train/momentum": d_opt.optimizer.param_groups[0].get("momentum", 0.0),
        }
        if g_loss is not None:
            metrics["train/g_loss"] = g_loss.detach()
        self.log_dict(metrics, on_step=True, on_epoch=False)
        self.log_dict(
            {"train/d_loss_epoch": d_loss.detach(), "train/d_fake_epoch": metrics["train/d_fake"]},
            on_step=False,
            on_epoch=True,
            prog_bar=True,
        )
