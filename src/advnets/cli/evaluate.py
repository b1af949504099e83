"""``advnets-eval``: the paper's Parzen protocol on a trained generator: ``results.json``, ``samples.npz``, pictures,
and (``logger=wandb``, the default, offline) one W&B run with the numbers, the config and the pictures.

``advnets-eval ckpt_path=RUN/checkpoints/best.ckpt`` (or a generator ``state_dict`` .pt with the run's
``config.yaml`` beside it) re-derives the number; training calls the same ``advnets.evaluation.evaluate_run`` on its
best checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from advnets import CONF_DIR
from advnets.cli.help import with_help
from advnets.errors import cli
from advnets.logs import get_logger, output

log = get_logger(__name__)


def evaluate(cfg: DictConfig, summary: list[str] | None = None) -> dict[str, Any]:
    """``advnets-eval``: the protocol on a checkpoint, written to this job's output folder; what it says at the
    end goes to ``summary``."""
    from hydra.utils import instantiate

    from advnets.data import ImageDataModule
    from advnets.evaluation import EvalSettings, eval_device, evaluate_run, log_results
    from advnets.metrics.suite import check_names
    from advnets.runs.folders import build_loggers
    from advnets.runs.generator import (
        build_generator,
        checkpoint_in,
        export_generator,
        find_run_config,
        load_generator_weights,
    )
    from advnets.runs.summary import summary_lines
    from advnets.schema import EVALUATE, validate

    validate(cfg, EVALUATE)
    settings = EvalSettings.from_dict(OmegaConf.to_container(cfg.eval, resolve=True))  # type: ignore[arg-type]
    check_names(settings.metrics)
    given = Path(cfg.ckpt_path)
    ckpt = checkpoint_in(given)
    if ckpt != given:
        log.info("evaluating %s (of %s)", ckpt, given)
    state, meta = load_generator_weights(ckpt)
    run_cfg = find_run_config(ckpt, cfg.run_config)
    datamodule: ImageDataModule = instantiate(cfg.dataset if cfg.get("dataset") else run_cfg.dataset)
    generator = build_generator(run_cfg.model, state, datamodule.data_dim)
    device = eval_device(str(cfg.device))
    out_dir = Path(cfg.paths.output_dir)
    results = evaluate_run(
        generator,
        datamodule,
        run_cfg.game.noise,
        settings,
        out_dir,
        {"checkpoint": str(ckpt), **meta},
        device,
    )
    loggers = build_loggers(cfg, job_type="eval")  # W&B offline by default: one run per advnets-eval job
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log_results(loggers, results, out_dir, step=max(int(meta.get("updates") or 0) - 1, 0))  # the training's unit
    for logger in loggers:
        logger.finalize("success")
    if cfg.get("export_to"):
        export_generator(generator, run_cfg, Path(cfg.export_to))
    if summary is not None:
        summary += summary_lines(out_dir, {}, results)
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    from advnets.schema import EVALUATE, validate

    validate(cfg, EVALUATE, targets=False)  # the plain keys' rules, before torch loads
    from advnets.runs.folders import finish_wandb

    summary: list[str] = []
    try:
        evaluate(cfg, summary)
    finally:
        finish_wandb()
    for line in summary:  # after W&B's own closing lines
        output(line)


USAGE = [
    ("advnets-eval ckpt_path=RUN_FOLDER", "the run's best checkpoint, the paper's protocol (10,000 samples)"),
    ("advnets-eval ckpt_path=RUN/checkpoints/last.ckpt", "any checkpoint of a run"),
    ("advnets-eval ckpt_path=results/paper_mnist/generator.pt", "a published generator (its config.yaml beside it)"),
    ("advnets-eval ckpt_path=... eval.n_samples=2000 device=cpu", "fewer samples; on the CPU"),
]


main = with_help(
    cli(hydra_main, config_name="evaluate"),
    "advnets-eval",
    "score a trained generator: the paper's Parzen protocol and the metrics beyond it",
    USAGE,
)


if __name__ == "__main__":
    main()
