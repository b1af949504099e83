"""``advnets-train``: compose the config with Hydra and run one training job (``advnets.training.run``).

Only Hydra and the config check are imported here: a mistake in the config is reported before torch and
Lightning load (``advnets.training`` imports them when a job really starts)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from advnets import CONF_DIR
from advnets.cli.entry import cli
from advnets.cli.help import with_help
from advnets.logs import output


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    from advnets.schema import TRAIN, check_train_together, validate

    validate(cfg, TRAIN, targets=False)  # the plain keys' rules: no imports of the built classes yet
    check_train_together(cfg)
    from advnets.training import run

    summary: list[str] = []
    try:
        score = run(cfg, summary)
    finally:
        for line in summary:  # last, after W&B's own closing lines (run closes the W&B run)
            output(line)
    entry.exit_status = score.exit_status  # a single run stopped by a signal: exits so once Hydra's hooks ran
    return score


USAGE = [
    ("advnets-train [group=option ...] [key=value ...]", "one run, into outputs/<experiment>/<time>/"),
    ("advnets-train", "the quickstart: a minute on the CPU (scikit-learn's digits, no download)"),
    ("advnets-train experiment=paper_mnist", "the paper's MNIST run (downloads MNIST; hours on a CPU)"),
    ("advnets-train -m optimizer=adam,paper_sgd seed=1,2", "a sweep: every combination, one job each"),
    ("advnets-train -m hparams_search=optuna", "an Optuna search (the study in outputs/optuna.db)"),
    ("advnets-train -m hydra/launcher=slurm trainer=cpu ...", "a sweep as SLURM jobs"),
    ("advnets-train [overrides] --cfg job", "print the composed config; run nothing"),
    ("advnets-train --config-dir DIR experiment=NAME", "groups and options of one's own (DIR/model/*.yaml, ...)"),
]


entry = cli(hydra_main, config_name="train")
main = with_help(
    entry,
    "advnets-train",
    "train the adversarial nets of Goodfellow et al. (2014): one run, or a sweep with -m",
    USAGE,
)


if __name__ == "__main__":
    main()
