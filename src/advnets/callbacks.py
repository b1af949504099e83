"""Training-time views of the game: the validation Parzen monitor, the metric monitor and fixed-noise sample grids."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from advnets.choices import Noise
from advnets.metrics import registry
from advnets.metrics.parzen import SIGMA_GRID, select_sigma
from advnets.metrics.suite import SuiteSettings, check_names, score_suite
from advnets.pictures import save_grid
from advnets.sampling import generate, noise_from_seed
from advnets.store import atomic
from advnets.store.loggers import log_picture


def _log_step(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """The game's logged step: an update count, the unit of every logged value (see ``AdversarialGame.log_step``)."""
    return int(getattr(pl_module, "log_step", trainer.global_step))


def _due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    return every_n_epochs > 0 and (trainer.current_epoch + 1) % every_n_epochs == 0


def last_epoch(trainer: pl.Trainer) -> bool:
    """This epoch is the fit's last: ``max_epochs`` or ``max_steps`` reached (also in a resumed fit, whose epoch
    and step counts are restored), or the fit told to stop (``max_time``)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs:
        return True
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        return True
    return bool(trainer.should_stop)


def scored(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """A monitor (on: ``every_n_epochs`` > 0) scores every N epochs and at the last epoch, so every run that
    trains to its end has a validation score, and a best checkpoint, of its final epoch."""
    return _due(trainer, every_n_epochs) or (every_n_epochs > 0 and last_epoch(trainer))


class ParzenMonitor(pl.Callback):
    """Every N epochs and at the last epoch: samples from G scored on the first validation images, sigma
    re-selected on the grid.

    Logs ``val/parzen_ll`` (for checkpoint selection) and ``val/parzen_sigma``, and appends a row to
    ``val_curve.csv`` in the run folder. The samples' noise is fixed by the seed, so every DDP rank draws the
    same samples from its (identical) G and computes the same number; nothing is gathered.
    """

    def __init__(self, every_n_epochs: int = 5, n_samples: int = 2000, n_valid: int = 1000) -> None:
        self.every_n_epochs, self.n_samples, self.n_valid = every_n_epochs, n_samples, n_valid

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not scored(trainer, self.every_n_epochs):
            return
        valid = trainer.datamodule.load().valid[: self.n_valid].to(pl_module.device)
        ll, sigma = self.score(pl_module.generator, pl_module.noise, pl_module.seed, valid)
        pl_module.log_dict({"val/parzen_ll": ll, "val/parzen_sigma": sigma}, on_epoch=True, prog_bar=False)
        if trainer.is_global_zero:
            self._append(Path(trainer.default_root_dir) / "val_curve.csv", trainer, ll, sigma)

    def score(self, generator: torch.nn.Module, noise: Noise, seed: int, valid: torch.Tensor) -> tuple[float, float]:
        """G's validation Parzen and its sigma as this monitor reads them: ``n_samples`` from the run's seeded
        noise against the first ``n_valid`` of ``valid``; a generator that returns non-finite samples scores -inf."""
        z = noise_from_seed(self.n_samples, generator.noise_dim, noise, seed + 7)
        samples = generate(generator, z.to(valid.device))
        if not torch.isfinite(samples).all():
            return float("-inf"), float("nan")
        sigma, per_sigma = select_sigma(valid[: self.n_valid], samples, SIGMA_GRID, precision="float32")
        return float(per_sigma.max()), sigma

    @staticmethod
    def _append(path: Path, trainer: pl.Trainer, ll: float, sigma: float) -> None:
        """Add this epoch's row; rows of this or later epochs (left by a run killed before its checkpoint) go."""
        epoch = trainer.current_epoch + 1
        lines = path.read_text().splitlines() if path.exists() else ["epoch,step,val_parzen_ll,sigma"]
        kept = [lines[0]] + [row for row in lines[1:] if row.split(",")[0].isdigit() and int(row.split(",")[0]) < epoch]
        kept.append(f"{epoch},{_log_step(trainer, trainer.lightning_module)},{ll:.4f},{sigma:.6g}")
        atomic.write_text(path, "\n".join(kept) + "\n")


class MetricMonitor(pl.Callback):
    """Every N epochs and at the last epoch (N = 0: off): a cheap part of the suite beyond Parzen, samples vs the
    first validation images.

    Logs ``val/<name>`` for each of ``metrics`` (e.g. ``val/fid``), so the best checkpoint and sweeps can follow
    it (``objective=val/fid``). Like the Parzen monitor, every DDP rank draws the same samples from the same
    seed and computes the same numbers. A diverged generator scores the registry's worst value."""

    def __init__(
        self, every_n_epochs: int = 0, metrics: tuple[str, ...] = ("fid",), n_samples: int = 2000, n_valid: int = 2000
    ) -> None:
        self.every_n_epochs, self.n_samples, self.n_valid = every_n_epochs, n_samples, n_valid
        self.metrics = check_names(list(metrics))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not scored(trainer, self.every_n_epochs):
            return
        datamodule = trainer.datamodule
        valid = datamodule.load().valid[: self.n_valid].to(pl_module.device)
        z = noise_from_seed(self.n_samples, pl_module.generator.noise_dim, pl_module.noise, pl_module.seed + 11)
        samples = generate(pl_module.generator, z.to(pl_module.device))
        if torch.isfinite(samples).all():
            values = score_suite(samples, valid, datamodule.name, self.metrics, SuiteSettings(seed=pl_module.seed))
        else:
            values = {name: registry.spec(name).failed for name in self.metrics}
        pl_module.log_dict({f"val/{k}": float(v) for k, v in values.items()}, on_epoch=True, prog_bar=False)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (monitored, top-k) that also saves at the last epoch, when the monitors score
    too (``scored``), so a run shorter than the monitor's interval has a best checkpoint. Its state is stored
    under ModelCheckpoint's key: the checkpoints of runs that used ModelCheckpoint itself resume with it."""

    @property
    def state_key(self) -> str:
        return "ModelCheckpoint" + super().state_key.removeprefix(type(self).__qualname__)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if _due(trainer, self._every_n_epochs) or not scored(trainer, self._every_n_epochs):
            return  # saved by Lightning's own rule, or not a scored epoch
        if getattr(pl_module, "diverged_at", None) is not None:
            return  # a diverged game stopped here (after the monitors ran): no new score to keep
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


class SampleGrid(pl.Callback):
    """Every N epochs (and the last): G(fixed z) as an image grid, saved under ``samples/`` and sent to every
    logger that takes pictures (``advnets.store.loggers.log_picture``), at the epoch's last update."""

    def __init__(self, every_n_epochs: int = 5, nrow: int = 10) -> None:
        self.every_n_epochs, self.nrow = every_n_epochs, nrow

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (_due(trainer, self.every_n_epochs) or trainer.current_epoch + 1 == trainer.max_epochs):
            return
        if not trainer.is_global_zero:
            return
        images = generate(pl_module.generator, pl_module.fixed_z)
        shape = trainer.datamodule.load().image_shape
        path = Path(trainer.default_root_dir) / "samples" / f"epoch_{trainer.current_epoch + 1:04d}.png"
        save_grid(images, shape, path, self.nrow)
        log_picture(trainer.loggers, "samples", path, _log_step(trainer, pl_module))
