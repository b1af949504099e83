"""Config composition: every experiment and group option composes; paper values are where the paper put them."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from advnets import CONF_DIR
from advnets.schema import TRAIN, validate

from conftest import compose_cfg, run_advnets

GROUP_OPTIONS = {
    "dataset": ["mnist", "digits"],
    "model": ["paper_mnist", "small"],
    "optimizer": ["paper_sgd", "adam"],
    "trainer": ["auto", "cpu", "gpu", "ddp", "ddp_spawn"],
    "logger": ["wandb", "csv", "tensorboard", "mlflow", "none"],
    "experiment": ["paper_mnist", "quickstart"],
    "debug": ["fast", "limit", "overfit", "profiler"],
}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes_and_passes_the_schema(group: str, option: str) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = [f"{group}={option}", "paths.output_dir=/tmp/unused"]
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == option
    HydraConfig.instance().set_config(cfg)  # ${name} reads the experiment's name from Hydra
    try:
        validate(cfg, TRAIN)  # every key known, every value typed and in range, every _target_ importable
    finally:
        HydraConfig.instance().cfg = None


def test_paper_mnist_carries_the_released_values_and_the_quickstart_is_the_default() -> None:
    assert compose_cfg([]) == compose_cfg(["experiment=quickstart"])  # `advnets-train`: a minute, no download
    cfg = compose_cfg(["experiment=paper_mnist"])
    assert cfg.dataset.name == "mnist" and cfg.dataset.batch_size == 100
    assert (cfg.dataset.n_train, cfg.dataset.n_valid) == (50000, 10000)
    assert cfg.model.noise_dim == 100 and list(cfg.model.generator.hidden) == [1200, 1200]
    assert list(cfg.model.discriminator.units) == [240, 240] and cfg.model.discriminator.pieces == 5
    assert (cfg.model.discriminator.input_keep, cfg.model.discriminator.hidden_keep) == (0.8, 0.5)
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.schedule.lr_decay == 1.000004
    assert cfg.game["update"] == "joint" and cfg.game.noise == "uniform" and cfg.loss.g_loss == "non_saturating"
    assert cfg.eval.n_samples == 10000 and len(cfg.eval.grid) == 10


def test_quickstart_is_a_diff_on_the_defaults() -> None:
    cfg = compose_cfg(["experiment=quickstart"])
    assert cfg.dataset.name == "digits" and cfg.dataset.data_dim == 64
    assert cfg.model.generator.data_dim == 64 and cfg.optimizer.generator._target_ == "torch.optim.Adam"


def test_per_net_learning_rates_follow_the_shared_one_unless_overridden() -> None:
    cfg = compose_cfg(["experiment=paper_mnist", "optimizer.lr=0.05", "optimizer.d_lr=0.01"])
    g_opt, d_opt = instantiate(cfg.optimizer.generator), instantiate(cfg.optimizer.discriminator)
    assert g_opt.keywords["lr"] == 0.05 and d_opt.keywords["lr"] == 0.01


PAPER_KEYS = {
    "model/paper_mnist.yaml": ["noise_dim", "hidden", "init_range", "units", "pieces", "input_keep", "hidden_keep"],
    "optimizer/paper_sgd.yaml": ["lr", "lr_decay", "min_lr", "momentum_start", "momentum_final"],
    "dataset/mnist.yaml": ["batch_size", "n_train", "n_valid", "data_dim"],
    "eval/paper.yaml": ["n_samples", "n_valid", "grid"],
    "game/default.yaml": ["update", "k", "noise"],
    "loss/paper.yaml": ["g_loss"],
}


@pytest.mark.parametrize("name", sorted(PAPER_KEYS))
def test_every_paper_value_names_its_source(name: str) -> None:
    from pathlib import Path

    from advnets import CONF_DIR

    lines = (Path(CONF_DIR) / name).read_text().splitlines()
    for key in PAPER_KEYS[name]:
        found = [line for line in lines if line.strip().startswith(f"{key}:") and "${" not in line]
        assert found, f"{name}: no {key}"
        for line in found:
            assert "[code]" in line or "[paper]" in line, f"{name}: {line.strip()!r} does not name its source"


def test_cli_help_and_cfg_job_work_as_hydra_users_expect() -> None:
    out = run_advnets("train", "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    (experiments,) = [line for line in out.stdout.splitlines() if line.startswith("experiment: ")]
    assert {
        "paper_mnist",
        "quickstart",
        "paper_tfd",
        "paper_cifar10_fc",
        "paper_cifar10_conv",
        "paper_fashion_mnist",
    } <= set(experiments.removeprefix("experiment: ").split(", "))
    job = run_advnets("train", "experiment=quickstart", "--cfg", "job")
    assert job.returncode == 0 and "name: digits" in job.stdout


def test_eval_help_lists_only_the_groups_evaluation_composes() -> None:
    out = run_advnets("evaluate", "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    page = out.stdout.split("Config groups (group=option):\n", 1)[1].split("\n\n", 1)[0]
    assert {line.split(":", 1)[0] for line in page.splitlines()} == {"dataset", "eval", "logger", "paths"}
    train = run_advnets("train", "--help").stdout
    assert "hydra/launcher: " in train and "model: " in train and "optimizer: " in train
