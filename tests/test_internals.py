"""advnets.internals, the one adapter to the libraries' private API: each function on real objects of the installed
versions (an upgrade that moves one fails here, by name), and no private access anywhere else in the package."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from advnets import internals

from conftest import REPO, quiet_trainer


class _ManualSteps(pl.LightningModule):
    """Manual optimization that steps its raw optimizer and counts the steps and batches through internals,
    as the game does for K updates per Lightning step."""

    def __init__(self, per_step: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.per_step, self.started, self.counted_before = per_step, [], []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        optimizer = self.optimizers().optimizer  # the raw torch optimizer: Lightning counts nothing
        self.started.append(internals.batches_started(self.trainer))
        self.counted_before.append(internals.optimizer_steps_counted(self.trainer))
        for _ in range(self.per_step):
            optimizer.zero_grad()
            (self.weight.sum() * batch.sum()).backward()
            optimizer.step()
        internals.count_optimizer_steps(self.trainer, self.per_step)
        internals.count_batches(self.trainer, self.per_step - 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(4, 3), batch_size=1)


def test_lightnings_fit_loop_counters_are_where_internals_reach_them() -> None:
    module = _ManualSteps(per_step=3)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module)
    assert module.started == [1, 2, 3, 4] * 2  # the epoch's batches started, the current one included
    assert module.counted_before == [3 * i for i in range(8)]
    assert trainer.global_step == internals.optimizer_steps_counted(trainer) == 3 * 8
    # what a checkpoint stores: every batch that stepped, Lightning's own one per step included
    assert trainer.fit_loop.state_dict()["epoch_loop.state_dict"]["_batches_that_stepped"] == 3 * 8
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    assert (progress.current.ready, progress.current.completed) == (3 * 8, 3 * 8)  # this fit's, since its start


def test_the_wandb_loggers_init_arguments_reach_wandb_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    seen: dict = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "run", None)
    logger = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    arguments = internals.wandb_init_arguments(logger)
    assert "anonymous" in arguments  # what build_loggers drops
    arguments.pop("anonymous")
    arguments["settings"] = {"max_end_of_run_summary_metrics": 40}
    with pytest.raises(Stop):
        _ = logger.experiment
    assert "anonymous" not in seen and seen["settings"] == {"max_end_of_run_summary_metrics": 40}
    assert seen["project"] == "p"


def test_hydras_locate_sweep_split_and_job_exception() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.utils import JobReturn, JobStatus

    from advnets.game import AdversarialGame

    assert internals.locate("advnets.game.AdversarialGame") is AdversarialGame
    with pytest.raises(ImportError):
        internals.locate("no.such.Thing")
    overrides = OverridesParser.create().parse_overrides(["a=1,2", "b=x"])
    assert internals.split_sweep_arguments(overrides) == [[["a=1", "b=x"], ["a=2", "b=x"]]]
    failed = JobReturn(status=JobStatus.FAILED)
    error = ValueError("a mistake")
    failed.return_value = error  # Hydra's own setter, as run_job does
    assert internals.job_exception(failed) is error
    assert internals.job_exception(JobReturn(status=JobStatus.COMPLETED, _return_value=1.5)) is None


def test_torchs_foreach_operations() -> None:
    a, b = [torch.ones(3), torch.full((2,), 2.0)], [torch.ones(3), torch.ones(2)]
    internals.foreach_mul_(a, 0.5)
    internals.foreach_add_(a, b, alpha=-2.0)
    assert torch.equal(a[0], torch.full((3,), -1.5)) and torch.equal(a[1], torch.full((2,), -1.0))
    internals.foreach_add_(a, b)
    assert torch.equal(a[0], torch.full((3,), -0.5))


def _private_accesses(path: Path) -> list[str]:
    """``x._name`` in a module's code (strings and comments aside), where ``x`` is not ``self`` or ``cls``."""
    found, previous = [], []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        name = token.string
        if token.type == tokenize.NAME and name.startswith("_") and not name.startswith("__") and len(previous) > 1:
            dot, owner = previous[-1], previous[-2]
            if dot.string == "." and owner.string not in ("self", "cls"):
                found.append(f"{path.relative_to(REPO)}:{token.start[0]}: {owner.string}.{name}")
        previous = [*previous[-1:], token]
    return found


def test_no_private_api_is_reached_outside_the_adapter() -> None:
    modules = [path for path in sorted((REPO / "src" / "advnets").rglob("*.py")) if path.name != "internals.py"]
    found = [hit for path in modules for hit in _private_accesses(path)]
    assert found == [], "\n".join(found)
