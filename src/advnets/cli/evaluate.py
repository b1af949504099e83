"""``advnets-eval``: the paper's Parzen protocol on a trained generator: ``results.json``, ``samples.npz``, pictures,
and (``logger=wandb``, the default, offline) one W&B run with the numbers, the config and the pictures.

``advnets-eval ckpt_path=RUN/checkpoints/best.ckpt`` (or a generator ``state_dict`` .pt with the run's
``config.yaml`` beside it) re-derives the number; training calls the same ``advnets.evaluation.evaluate_run`` on its
best checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from advnets import CONF_DIR
from advnets.data import ImageDataModule
from advnets.errors import cli
from advnets.evaluation import (
    build_generator,
    eval_device,
    evaluate_run,
    export_generator,
    find_run_config,
    load_generator_weights,
    log_results,
)
from advnets.metrics.suite import check_names
from advnets.runs.folders import build_loggers, finish_wandb
from advnets.schema import EVALUATE, validate


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """``advnets-eval``: the protocol on a checkpoint, written to this job's output folder."""
    validate(cfg, EVALUATE)
    check_names(list(cfg.eval.get("metrics") or []))
    ckpt = Path(cfg.ckpt_path)
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
        cfg.eval,
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
    print(json.dumps({k: results[k] for k in ("parzen_ll", "parzen_se", "sigma", "n_samples")}))
    for key in ("metrics", "metrics_reference"):
        if key in results:
            print(json.dumps({key: {k: round(v, 4) for k, v in results[key].items()}}))
    print(f"results: {out_dir / 'results.json'}")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    finally:
        finish_wandb()


main = cli(hydra_main)


if __name__ == "__main__":
    main()
