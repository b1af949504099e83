"""The recipe search on the paper's MNIST nets (hparams_search=paper_mnist_recipe), run as a user starts it, cut to
two one-epoch trials of two batches: what the sweeper and the custom space draw is what each trial trains."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from conftest import run_cli

CUT = [
    "hydra.sweeper.n_trials=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "callbacks.parzen_monitor.every_n_epochs=1",
    "callbacks.parzen_monitor.n_samples=200",
    "callbacks.parzen_monitor.n_valid=200",
    "logger=none",
]


@pytest.mark.slow  # started first: among the suite's longest
def test_the_recipe_search_trains_what_each_trial_draws_and_never_sees_the_test_set(
    tmp_path: Path, mnist_dir: str
) -> None:
    import optuna

    proc = run_cli("train", "-m", "hparams_search=paper_mnist_recipe", *CUT, cwd=tmp_path, ADVNETS_DATA_DIR=mnist_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="paper_mnist_recipe", storage=f"sqlite:///{tmp_path}/outputs/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    (sweep,) = (tmp_path / "outputs" / "paper_mnist" / "multirun").iterdir()
    for trial in study.trials:
        job = sweep / str(trial.number)
        config = _load(job / ".hydra" / "config.yaml")
        assert config["model"]["generator"]["hidden"] == [1200, 1200]  # the paper's nets, fixed
        assert config["game"]["noise"] == trial.params["game.noise"]
        assert config["optimizer"]["g_lr"] == trial.params["optimizer.g_lr"]
        assert config["optimizer"]["d_lr"] == trial.params["optimizer.d_lr"]
        if trial.params["optimizer"] == "adam":
            assert config["optimizer"]["beta1"] == trial.params["optimizer.beta1"]
        else:
            assert config["optimizer"]["schedule"]["lr_decay"] == trial.params["optimizer.schedule.lr_decay"]
        best = max(float(line.split(",")[2]) for line in (job / "val_curve.csv").read_text().splitlines()[1:])
        assert trial.value == pytest.approx(best, abs=1e-3)  # the objective: the trial's best validation Parzen
        assert not (job / "results.json").exists()  # evaluate=false: the test set is scored once, at the end


def _load(path: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))
