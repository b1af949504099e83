"""The recipe search on the paper's MNIST nets (``hparams_search=paper_mnist_recipe``): what the paper's text leaves
open, or what a researcher tries first, with the nets, the data and the Parzen protocol fixed.

The sweeper itself draws ``optimizer`` (``paper_sgd`` | ``adam``), ``game.noise`` and ``game.update``
(``hydra.sweeper.params``); ``paper_mnist_recipe`` then draws what belongs to those choices."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

SGD_LR = (0.02, 0.5)  # around the released 0.1, per net
ADAM_LR = (1e-5, 1e-3)  # around the usual 2e-4, per net
LR_DECAYS = (1.0, 1.000002, 1.000004, 1.00001)  # per update; [code] 1.000004 (none, half, released, 2.5x)


def paper_mnist_recipe(cfg: DictConfig, trial: Any) -> None:
    """Draw each net's learning rate for the chosen optimizer and that optimizer's own settings: SGD's momentum
    schedule and lr decay, Adam's beta1; and Algorithm 1's k when updates alternate."""
    if trial.params["optimizer"] == "paper_sgd":
        trial.suggest_float("optimizer.g_lr", *SGD_LR, log=True)
        trial.suggest_float("optimizer.d_lr", *SGD_LR, log=True)
        trial.suggest_float("optimizer.schedule.momentum_final", 0.5, 0.95)
        trial.suggest_int("optimizer.schedule.momentum_saturate_epoch", 10, 250, log=True)
        trial.suggest_categorical("optimizer.schedule.lr_decay", LR_DECAYS)
    else:
        trial.suggest_float("optimizer.g_lr", *ADAM_LR, log=True)
        trial.suggest_float("optimizer.d_lr", *ADAM_LR, log=True)
        trial.suggest_float("optimizer.beta1", 0.0, 0.9)
    if trial.params["game.update"] == "alternating":
        trial.suggest_int("game.k", 1, 3)
