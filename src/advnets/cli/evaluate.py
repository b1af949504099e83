"""``advnets-eval``: the paper's Parzen protocol on a trained generator: ``results.json``, ``samples.npz``, pictures,
and (``logger=wandb``, the default, offline) one W&B run with the numbers, the config and the pictures.

``advnets-eval RUN_FOLDER`` (or ``ckpt_path=RUN/checkpoints/best.ckpt``, or a generator ``state_dict`` .pt with the
run's ``config.yaml`` beside it) re-derives the number; training calls the same ``advnets.evaluation.evaluate_run``
on its best checkpoint.

What it is given is checked before torch loads (``advnets.jobs.eval_inputs``): a missing ``ckpt_path``, a path
that is not there, a folder without a checkpoint, a file torch.save did not write, and a run config naming a
target or resolver beyond advnets' own and the user's (``advnets.jobs.trusted``) are each one line and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from advnets import CONF_DIR
from advnets.cli.entry import cli
from advnets.cli.help import with_help
from advnets.errors import UserError, fail
from advnets.logs import get_logger, output

if TYPE_CHECKING:
    from advnets.run_folder import RunFolder

log = get_logger(__name__)


MISSING = "ckpt_path is missing: advnets-eval RUN_FOLDER (or ckpt_path=...), a run folder, a .ckpt or a generator.pt"


def checked_inputs(cfg: DictConfig) -> tuple[Path, DictConfig]:
    """The checkpoint file ``ckpt_path`` names and its run's config (read as data, its targets and resolvers
    checked), or a one-line UserError; nothing heavy is imported."""
    from advnets.jobs.eval_inputs import check_torch_file, checkpoint_in, run_config_path
    from advnets.jobs.trusted import load_foreign_config, user_config_folders

    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise UserError(MISSING)
    ckpt = check_torch_file(checkpoint_in(Path(cfg.ckpt_path)))
    run_cfg = load_foreign_config(run_config_path(ckpt, cfg.run_config), user_config_folders(), cfg)
    return ckpt, run_cfg


def announce(given: Path, ckpt: Path) -> None:
    """``advnets: evaluating FILE``, with the folder it was found in and, for a published generator, the epoch
    its record gives (a Lightning checkpoint says its own epoch once loaded)."""
    from advnets.jobs.eval_inputs import recorded_facts

    found_in = f" of {given}" if ckpt != given else ""
    epoch = recorded_facts(ckpt).get("epoch") if ckpt.suffix == ".pt" else None
    taken = f", epoch {epoch} as {ckpt.parent / 'results.json'} records" if epoch is not None else ""
    log.info("evaluating %s%s%s", ckpt, found_in, taken)


def evaluate(
    cfg: DictConfig,
    summary: list[str] | None = None,
    inputs: tuple[Path, DictConfig] | None = None,
    folder: RunFolder | None = None,
) -> dict[str, Any]:
    """``advnets-eval``: the protocol on a checkpoint, written to this job's output folder (``folder``:
    ``RunFolder.of(cfg)`` where none is given); what it says at the end goes to ``summary``. ``inputs``: what
    ``checked_inputs`` found, if already called."""
    import torch
    from hydra.utils import instantiate

    from advnets.data import ImageDataModule
    from advnets.evaluation import EvalSettings, eval_device, evaluate_run, log_results
    from advnets.jobs.generator import build_generator, export_generator, load_generator_weights
    from advnets.run_folder import RunFolder
    from advnets.schema import EVALUATE, validate
    from advnets.summary import summary_lines

    ckpt, run_cfg = inputs or checked_inputs(cfg)
    validate(cfg, EVALUATE)
    settings = EvalSettings.from_dict(OmegaConf.to_container(cfg.eval, resolve=True))  # type: ignore[arg-type]
    settings.check_metrics()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    state, meta = load_generator_weights(ckpt)
    datamodule: ImageDataModule = instantiate(cfg.dataset if cfg.get("dataset") else run_cfg.dataset)
    generator = build_generator(run_cfg.model, state, datamodule.data_dim)
    device = eval_device(str(cfg.device))
    folder = folder or RunFolder.of(cfg)
    out_dir = folder.path
    results = evaluate_run(
        generator,
        datamodule,
        run_cfg.game.noise,
        settings,
        out_dir,
        {"checkpoint": str(ckpt), **meta},
        device,
    )
    loggers = folder.loggers(job_type="eval")  # W&B offline by default: one run per advnets-eval job
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log_results(loggers, results, out_dir, step=max(int(meta.get("updates") or 0) - 1, 0))  # the training's unit
    for logger in loggers:
        logger.finalize("success")
    if cfg.get("export_to"):
        export_generator(generator, run_cfg, Path(cfg.export_to))
    if summary is not None:
        summary += summary_lines(out_dir, {}, results, what="evaluation")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    from advnets.schema import EVALUATE, validate

    validate(cfg, EVALUATE, targets=False)  # the plain keys' rules, before torch loads
    inputs = checked_inputs(cfg)  # the checkpoint and its run's config, also before torch loads
    announce(Path(cfg.ckpt_path), inputs[0])
    from advnets.run_folder import RunFolder

    folder = RunFolder.of(cfg)
    summary: list[str] = []
    try:
        evaluate(cfg, summary, inputs, folder)
    finally:
        folder.close()
    for line in summary:  # after W&B's own closing lines
        output(line)


USAGE = [
    ("advnets-eval RUN_FOLDER", "the run's best checkpoint, the paper's protocol (10,000 samples)"),
    ("advnets-eval RUN/checkpoints/last.ckpt", "any checkpoint of a run (or ckpt_path=RUN/checkpoints/last.ckpt)"),
    ("advnets-eval results/paper_mnist/generator.pt", "a published generator (its config.yaml beside it)"),
    ("advnets-eval RUN_FOLDER eval.n_samples=2000 device=cpu", "fewer samples; on the CPU"),
    ("advnets-eval --config-dir DIR RUN_FOLDER", "a run built from your own classes (DIR's configs name them)"),
]


def with_bare_path(entry: Callable[[], None]) -> Callable[[], None]:
    """``entry`` taking ``advnets-eval PATH`` as ``advnets-eval ckpt_path=PATH`` (as advnets-compare and
    advnets-report take paths)."""

    def main() -> None:
        from advnets.jobs.eval_inputs import bare_path_as_ckpt_path

        try:
            sys.argv[1:] = bare_path_as_ckpt_path(sys.argv[1:])
        except UserError as err:
            fail(str(err))
        entry()

    return main


main = with_help(
    with_bare_path(cli(hydra_main, config_name="evaluate")),
    "advnets-eval",
    "score a trained generator: the paper's Parzen protocol and the metrics beyond it",
    USAGE,
    config_name="evaluate",  # the groups evaluate.yaml composes, no launcher
    shown_hydra_groups=(),
)


if __name__ == "__main__":
    main()
