"""Every use of a library's private API, each in one named function: what it reaches, and why nothing public does.

An upgrade that moves one of these breaks here and in ``tests/test_internals.py``, which checks each on real
objects of the installed versions, instead of somewhere deep in a run. Nothing heavy is imported at module
level: the config check imports this module before torch and Lightning load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# -- Lightning: the fit loop's counters -----------------------------------------------------------------------
# The game runs K updates per Lightning step and steps the raw torch optimizers (or the gradient scaler) itself,
# bypassing Lightning's step counting; these keep Lightning's counters what K = 1 with Lightning's optimizers gives.


def optimizer_steps_counted(trainer: Any) -> int:
    """The optimizer steps Lightning has counted under manual optimization (what ``trainer.global_step`` reads)."""
    return int(trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.total.completed)


def count_optimizer_steps(trainer: Any, n: int) -> None:
    """Count ``n`` more optimizer steps, as started and completed, in the run's and the epoch's progress trackers:
    what a Lightning optimizer's ``step()`` would have counted (``global_step``, ``max_steps``, checkpoint cadence)."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for tracker in (progress.total, progress.current):
        tracker.ready += n
        tracker.completed += n


def count_batches(trainer: Any, n: int) -> None:
    """Count ``n`` more batches that stepped (the private ``_batches_that_stepped``: the loggers' step unit and the
    ``log_every_n_steps`` cadence, stored in checkpoints); Lightning has no public way to advance it."""
    trainer.fit_loop.epoch_loop._batches_that_stepped += n


def batches_started(trainer: Any) -> int:
    """The batches of the current epoch that Lightning has started (its batch progress tracker): at the epoch's
    last batch this equals ``trainer.num_training_batches``."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


# -- W&B through Lightning --------------------------------------------------------------------------------------


def wandb_init_arguments(logger: Any) -> dict[str, Any]:
    """The keyword arguments a ``WandbLogger`` hands to ``wandb.init`` when its run starts (its private
    ``_wandb_init``); edits made before the first log call reach ``wandb.init``. Lightning always passes
    ``anonymous`` (None, which wandb warns about) and offers no public way to leave it out."""
    return logger._wandb_init


# -- Hydra --------------------------------------------------------------------------------------------------------


def locate(path: str) -> Any:
    """The object a dotted ``_target_`` names, found as ``hydra.utils.instantiate`` finds it (Hydra's private
    ``_locate``; the public ``get_object`` also logs an error line for a name that does not import)."""
    from hydra._internal.utils import _locate

    return _locate(path)


def split_sweep_arguments(overrides: Sequence[Any]) -> list[list[list[str]]]:
    """The jobs of Hydra's basic sweeper for parsed ``overrides``, in the batches and order it launches them
    (``BasicSweeper.split_arguments``, in Hydra's private core plugins)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper.split_arguments(list(overrides), None)


def job_exception(job_return: Any) -> BaseException | None:
    """What a failed Hydra job raised: the private ``_return_value`` of its ``JobReturn`` (the public
    ``return_value`` re-raises it, after writing an "Error executing job" line)."""
    value = job_return._return_value
    return value if isinstance(value, BaseException) else None


# -- torch --------------------------------------------------------------------------------------------------------


def foreach_mul_(tensors: list[Any], scalar: float) -> None:
    """``t *= scalar`` for each tensor, in as few kernels as torch can (``torch._foreach_mul_``, what
    ``torch.optim`` uses)."""
    import torch

    torch._foreach_mul_(tensors, scalar)


def foreach_add_(tensors: list[Any], others: list[Any], alpha: float = 1.0) -> None:
    """``t += alpha * other`` for each pair (``torch._foreach_add_``, what ``torch.optim`` uses)."""
    import torch

    torch._foreach_add_(tensors, others, alpha=alpha)
