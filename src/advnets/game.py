"""The two-player minimax game as a LightningModule with manual optimization.

``update="joint"`` is the released code's rule: one forward on one batch and one z; D's gradient comes from the
D loss and G's from the G loss, both against D's pre-update weights, with one dropout mask for the fake batch;
then both optimizers step. It takes a single backward: the D loss sees the fake batch detached from G, the G
loss sees D through detached parameters, so ``manual_backward(d_loss + g_loss)`` gives each net exactly its
own gradient (and DDP syncs both in its one reduction).

``update="alternating"`` is Algorithm 1 of the paper: every batch is one D step; after every k-th D step, one G
step on fresh noise.

The losses come from ``loss`` (advnets.losses: the released code's by default); an R1 penalty (``r1_gamma > 0``)
joins D's loss under both rules, and under the joint rule reaches D alone (it involves D and real data only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import Tensor
from torch.func import functional_call
from torch.optim import Optimizer

from advnets import internals
from advnets.choices import CompileMode, Update, r1_with_compile
from advnets.errors import UserError
from advnets.logs import get_logger
from advnets.losses import Loss, PaperLoss
from advnets.nets import Generator, MaskedDropoutDiscriminator
from advnets.optim import make_optimizer
from advnets.sampling import Noise, sample_noise
from advnets.schedules import PaperSchedule

log = get_logger(__name__)  # rank zero's


def _stats(d_loss: Tensor, logit_real: Tensor, logit_fake: Tensor, g_loss: Tensor | None = None) -> Tensor:
    """[d_loss, mean D(x), mean D(G(z))(, g_loss)] detached, as one tensor: one add per update to sum them."""
    parts = [d_loss, torch.sigmoid(logit_real).mean(), torch.sigmoid(logit_fake).mean()]
    return torch.stack([p.detach() for p in (parts if g_loss is None else [*parts, g_loss])])


def _concat_masks(a: list[Tensor | None], b: list[Tensor | None]) -> list[Tensor | None]:
    return [None if x is None else torch.cat([x, y]) for x, y in zip(a, b, strict=True)]


class AdversarialGame(pl.LightningModule):
    """G and D, their optimizers, and the paper's update rules; the nets and optimizers come from config.

    Each Lightning step runs ``updates_per_step`` (K) updates on the K batches the data module hands over at
    once, with the random keys, schedules and step counts K = 1 uses: the game counts its own updates
    (``self.updates``, stored in checkpoints) and keys every update's noise and dropout by it. On one device
    the inner loop calls no Lightning API (plain backward, the raw torch optimizers); under DDP or a gradient
    scaler (16-mixed) every backward goes through ``manual_backward``, which DDP and AMP need, and the steps
    through the Lightning optimizers (DDP) or the scaler itself (16-mixed: one scale update per backward, see
    ``_step``). ``compile`` compiles the forward and backward of an update (torch.compile; ``reduce-overhead``
    uses CUDA graphs on CUDA); noise, masks and optimizer steps stay eager, so the random stream is the same.
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: MaskedDropoutDiscriminator,
        g_optimizer: partial[Optimizer],
        d_optimizer: partial[Optimizer],
        schedule: PaperSchedule | None = None,
        update: Update = "joint",
        k: int = 1,
        loss: Loss | None = None,
        noise: Noise = "uniform",
        seed: int = 0,
        n_fixed_samples: int = 100,
        updates_per_step: int = 1,
        compile: CompileMode = "none",
    ) -> None:
        super().__init__()
        if k < 1:
            raise UserError(f"game.k={k}; allowed: a positive integer")
        if not isinstance(updates_per_step, int) or updates_per_step < 1:
            raise UserError(f"game.updates_per_step={updates_per_step}; allowed: a positive integer")
        for name, opt in (("generator", g_optimizer), ("discriminator", d_optimizer)):
            lr = opt.keywords.get("lr", 1.0)
            if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
                raise UserError(f"optimizer.{name}.lr={lr}; allowed: a finite number > 0")
        loss = PaperLoss() if loss is None else loss
        if not isinstance(loss, Loss):
            name = type(loss).__name__
            raise UserError(f"loss: a {name} is no advnets.losses.Loss; allowed: loss._target_ naming a subclass of it")
        conflict = r1_with_compile(loss.r1_gamma, compile)
        if conflict:
            raise UserError(conflict)
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer, self.schedule = g_optimizer, d_optimizer, schedule
        self.update, self.k, self.loss, self.noise, self.seed = update, k, loss, noise, seed
        self.updates_per_step, self.compile_mode = updates_per_step, compile
        fixed = torch.Generator().manual_seed(seed)
        self.register_buffer("fixed_z", sample_noise(n_fixed_samples, generator.noise_dim, noise, "cpu", fixed))
        self._rng: torch.Generator | None = None
        # this rank's own record (a plain tensor, not a buffer: DDP would overwrite a buffer with rank 0's)
        self.losses_finite = torch.tensor(True)
        self.diverged_at: int | None = None
        self.updates = 0  # updates done (batches seen), across epochs and resumes
        self._seconds_before = 0.0  # training wall time of the run's earlier starts (from its checkpoint)
        self._fit_start: float | None = None
        self._fast = False  # set in on_fit_start: True where no Lightning API is needed per update
        self._scaler: Any = None  # set in on_fit_start: the gradient scaler of 16-mixed, else None
        self._joint_fn: Callable[..., tuple[Tensor, Tensor]] = self._joint_losses
        self._d_fn: Callable[..., tuple[Tensor, Tensor]] = self._d_losses
        self._g_fn: Callable[..., Tensor] = self._g_losses

    # -- randomness: a generator re-seeded per update, so a resumed run and every DDP rank draw reproducibly --
    def optimizer_steps(self, updates: int) -> int:
        """Optimizer steps (G + D, Lightning's ``global_step``) after ``updates`` updates."""
        return 2 * updates if self.update == "joint" else updates + updates // self.k

    def rng(self, step: int | None = None) -> torch.Generator:
        """The generator for one update's noise and dropout, seeded by (seed, rank, optimizer step)."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
        if step is None:
            step = self.optimizer_steps(self.updates)
        key = (self.seed * 1_000_003 + self.global_rank) * 10_000_019 + step
        return self._rng.manual_seed(key % (2**63))

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return sample_noise(n, self.generator.noise_dim, self.noise, self.device, generator or self.rng())

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @property
    def log_step(self) -> int:
        """The logged step of the update just done: its index (``updates - 1``), where Lightning logs the epoch's
        metrics. Every value logged (train/, val/, samples, test/) is at an update count, never an optimizer step."""
        return max(self.updates - 1, 0)

    # -- the game ---------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[Optimizer]:
        return [
            make_optimizer(self.g_optimizer, self.generator),
            make_optimizer(self.d_optimizer, self.discriminator),
        ]

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()
        trainer = self.trainer
        self._scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._fast = isinstance(trainer.strategy, SingleDeviceStrategy) and self._scaler is None
        self.losses_finite = torch.ones((), dtype=torch.bool, device=self.device)
        if self.compile_mode != "none":
            options = {} if self.compile_mode == "default" else {"mode": self.compile_mode}
            self._joint_fn = torch.compile(self._joint_losses, **options)
            self._d_fn = torch.compile(self._d_losses, **options)
            self._g_fn = torch.compile(self._g_losses, **options)

    def on_train_epoch_start(self) -> None:
        self._epoch_d = torch.zeros(3, device=self.device)  # sums of [d_loss, D(x), D(G(z))] over the epoch
        self._epoch_g = torch.zeros((), device=self.device)  # sum of g_loss
        self._epoch_n = 0
        self._epoch_g_n = 0  # G updates this epoch (fewer than updates under alternating updates with k > 1)
        if self.schedule is not None:
            for opt in self.optimizers():
                self.schedule.set_momentum(opt.optimizer, self.current_epoch)

    def train_seconds(self) -> float:
        """Training wall time of the whole run: this start's, plus every earlier start's (a resumed run)."""
        started = self._fit_start if self._fit_start is not None else time.perf_counter()
        return self._seconds_before + time.perf_counter() - started

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["advnets_updates"] = self.updates
        checkpoint["advnets_train_seconds"] = self.train_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "advnets_updates" not in checkpoint:
            raise UserError("the checkpoint holds no advnets_updates: it was not written by advnets' AdversarialGame")
        self.updates = int(checkpoint["advnets_updates"])
        self._seconds_before = float(checkpoint.get("advnets_train_seconds", 0.0))

    def _g_logits(self, fake: Tensor, masks: list[Tensor | None]) -> Tensor:
        """D's logits for G's loss: gradient flows into ``fake`` only, never into D's parameters."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (fake,), {"masks": masks})

    # The pure parts of an update (no randomness, no optimizer): what ``compile`` compiles.
    def _real(self, x: Tensor) -> Tensor:
        """The real batch, set to require its gradient where the loss has an R1 penalty."""
        return x.detach().requires_grad_(True) if self.loss.r1_gamma > 0 else x

    def _d_loss(self, x: Tensor, logit_real: Tensor, logit_fake: Tensor) -> tuple[Tensor, Tensor]:
        """(D's loss with its R1 penalty, if any; the loss alone, for the stats)."""
        d_loss = self.loss.d_loss(logit_real, logit_fake)
        if self.loss.r1_gamma > 0:
            return d_loss + self.loss.penalty(x, logit_real), d_loss
        return d_loss, d_loss

    def _joint_losses(self, x: Tensor, z: Tensor, masks_real: list, masks_fake: list) -> tuple[Tensor, Tensor]:
        """d_loss + g_loss (one routed backward) and the stats [d_loss, d_real, d_fake, g_loss], detached."""
        n, x = x.shape[0], self._real(x)
        fake = self.generator(z)
        logits = self.discriminator(torch.cat([x, fake.detach()]), _concat_masks(masks_real, masks_fake))
        d_total, d_loss = self._d_loss(x, logits[:n], logits[n:])
        g_loss = self.loss.g_loss(self._g_logits(fake, masks_fake))
        return d_total + g_loss, _stats(d_loss, logits[:n], logits[n:], g_loss)

    def _d_losses(self, x: Tensor, z: Tensor, masks_real: list, masks_fake: list) -> tuple[Tensor, Tensor]:
        """Algorithm 1's D loss (no graph in G) and the stats [d_loss, d_real, d_fake]."""
        n, x = x.shape[0], self._real(x)
        with torch.no_grad():
            fake = self.generator(z)
        logits = self.discriminator(torch.cat([x, fake]), _concat_masks(masks_real, masks_fake))
        d_total, d_loss = self._d_loss(x, logits[:n], logits[n:])
        return d_total, _stats(d_loss, logits[:n], logits[n:])

    def _g_losses(self, z: Tensor, masks: list) -> Tensor:
        return self.loss.g_loss(self._g_logits(self.generator(z), masks))

    def _backward(self, loss: Tensor) -> None:
        if self._fast:
            loss.backward()
        else:
            self.manual_backward(loss)

    def _step(self, *opts: Any) -> None:
        """One step of each optimizer on the gradients of one backward, each followed by its lr decay.

        Under a gradient scaler (16-mixed) the steps go to the scaler itself: every optimizer is unscaled with the
        scale the backward used, and the scale is updated once, after the last (a Lightning optimizer step each
        would update it in between, and unscale the next optimizer's gradients with the new scale)."""
        for opt in opts:
            if self._scaler is not None:
                self._scaler.step(opt.optimizer)
            else:
                (opt.optimizer if self._fast else opt).step()
            if self.schedule is not None:
                self.schedule.decay_lr(opt.optimizer)
        if self._scaler is not None:
            self._scaler.update()

    def _own(self, t: Tensor) -> Tensor:
        """A CUDA-graph output copied out of the graph's memory, which the next replay overwrites."""
        return t.clone() if self.compile_mode == "reduce-overhead" else t

    def _one_update(self, x: Tensor, g_opt: Any, d_opt: Any) -> tuple[Tensor, Tensor | None]:
        """One update of the configured rule on batch ``x``; returns its detached stats (and G's loss)."""
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        n, step = x.shape[0], self.optimizer_steps(self.updates)
        rng = self.rng(step)
        z = self.sample_z(n, rng)
        masks_real = self.discriminator.masks(n, rng)
        masks_fake = self.discriminator.masks(n, rng)
        g_loss: Tensor | None = None
        if self.update == "joint":
            loss, stats = self._joint_fn(x, z, masks_real, masks_fake)
            stats = self._own(stats)
            g_opt.zero_grad(set_to_none=True)
            d_opt.zero_grad(set_to_none=True)
            self._backward(loss)
            self._step(d_opt, g_opt)
            stats, g_loss = stats[:3], stats[3]
        else:
            d_loss, stats = self._d_fn(x, z, masks_real, masks_fake)
            stats = self._own(stats)
            d_opt.zero_grad(set_to_none=True)
            self._backward(d_loss)
            self._step(d_opt)
            if (self.updates + 1) % self.k == 0:
                g_rng = self.rng(step + 1)  # one optimizer step on: fresh noise and masks for the G step
                g_z = self.sample_z(n, g_rng)
                loss = self._g_fn(g_z, self.discriminator.masks(n, g_rng))
                g_opt.zero_grad(set_to_none=True)
                self._backward(loss)
                self._step(g_opt)
                g_loss = self._own(loss.detach())
        self.updates += 1
        return stats, g_loss

    def training_step(self, batch: Tensor) -> None:
        """K updates, one per batch of the group ([K, B, D]; a single [B, D] batch is K = 1)."""
        g_opt, d_opt = self.optimizers()
        group = batch.unsqueeze(0) if batch.dim() == 2 else batch
        loggers = self.trainer.loggers
        every = self.trainer.log_every_n_steps
        for x in group.unbind(0):
            stats, g_loss = self._one_update(x, g_opt, d_opt)
            self._epoch_d += stats
            if g_loss is not None:
                self._epoch_g += g_loss
                self._epoch_g_n += 1
            if loggers and every > 0 and self.updates % every == 0:
                self._log_update(stats, g_loss, g_opt, d_opt)
        self._epoch_n += len(group)
        self._advance_lightning_counters(len(group))
        self.losses_finite &= torch.isfinite(self._epoch_d).all() & torch.isfinite(self._epoch_g)  # no host sync
        n_batches = self.trainer.num_training_batches
        if not math.isfinite(n_batches) or internals.batches_started(self.trainer) >= n_batches:
            means = self._epoch_d / self._epoch_n  # the epoch's means, logged once per epoch (self.log is slow)
            shown = {"train/d_loss_epoch": means[0], "train/d_fake_epoch": means[2]}  # also in the progress bar
            self.log_dict(shown, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
            others = {"train/d_real_epoch": means[1]}
            if self._epoch_g_n:
                others["train/g_loss_epoch"] = self._epoch_g / self._epoch_g_n
            self.log_dict(others, on_step=False, on_epoch=True, batch_size=1)

    def _advance_lightning_counters(self, n: int) -> None:
        """Keep Lightning's ``global_step`` (optimizer steps) and logging step (batches) what K = 1 gives.

        The raw optimizers (and the scaler's steps) bypass Lightning's step counting; ``max_steps`` and
        checkpoint or log cadences therefore see the same counts as with K = 1 (checked once per Lightning step,
        so ``max_steps`` may be overshot by up to K - 1 updates)."""
        trainer = self.trainer
        if self._fast or self._scaler is not None:
            done = self.optimizer_steps(self.updates) - internals.optimizer_steps_counted(trainer)
            internals.count_optimizer_steps(trainer, done)
        internals.count_batches(trainer, n - 1)  # Lightning adds the last one after this step

    def _log_update(self, stats: Tensor, g_loss: Tensor | None, g_opt: Any, d_opt: Any) -> None:
        """Step metrics of the update just done, straight to the loggers (one host sync per logged update)."""
        d_loss, d_real, d_fake = stats.tolist()
        metrics = {
            "train/d_loss": d_loss,
            "train/d_real": d_real,
            "train/d_fake": d_fake,
            "train/lr_g": g_opt.optimizer.param_groups[0]["lr"],
            "train/lr_d": d_opt.optimizer.param_groups[0]["lr"],
            "train/momentum": d_opt.optimizer.param_groups[0].get("momentum", 0.0),
            "epoch": self.current_epoch,
        }
        if g_loss is not None:
            metrics["train/g_loss"] = float(g_loss)
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.log_step)

    def on_train_epoch_end(self) -> None:
        """Stop a diverged game (a non-finite loss this epoch) with one clear line, instead of training on NaN.

        The decision is reduced across DDP ranks (any rank diverged: every rank stops at this epoch), so a NaN
        on one rank never leaves the others waiting in a collective."""
        diverged = self.trainer.strategy.reduce_boolean_decision(not bool(self.losses_finite), all=False)
        if diverged:
            self.diverged_at = self.current_epoch + 1
            self.trainer.callback_metrics["run/diverged_at_epoch"] = torch.tensor(float(self.diverged_at))
            log.info("training diverged in epoch %d (non-finite loss); stopping this run", self.diverged_at)
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """The run's facts in ``callback_metrics``, which ``ddp_spawn`` hands back to the launching process."""
        metrics = self.trainer.callback_metrics
        metrics["run/epochs"] = torch.tensor(float(self.trainer.current_epoch))
        metrics["run/global_step"] = torch.tensor(float(self.trainer.global_step))
        metrics["run/log_step"] = torch.tensor(float(self.log_step))
        metrics["run/train_seconds"] = torch.tensor(self.train_seconds(), dtype=torch.float64)
        best = getattr(self.trainer.checkpoint_callback, "best_model_score", None)
        if best is not None:  # ddp_spawn hands best_model_path back to its parent, but not the score
            metrics["run/best_score"] = best.detach().float().cpu().reshape(())
