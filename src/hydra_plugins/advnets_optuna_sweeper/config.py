"""The configs of ``hydra/sweeper=optuna`` and its samplers (``hydra/sweeper/sampler=tpe|random|grid|cmaes``).

Nothing here imports Optuna: Hydra imports every module of ``hydra_plugins`` when it looks for plugins."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from advnets.search.trials import TRIAL_ID_ENV


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    """optuna.samplers.TPESampler"""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = False  # trials of one batch run at once: False proposes them as if the others were absent


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """optuna.samplers.RandomSampler"""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConfig(SamplerConfig):
    """optuna.samplers.GridSampler; its grid is made from ``hydra.sweeper.params`` when the sweep starts."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """optuna.samplers.CmaEsSampler (needs the ``cmaes`` package)."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    consider_pruned_trials: bool = False
    use_separable_cma: bool = False
    with_margin: bool = False


# Every job's hydra.job.env_set holds the trial-id variable, empty until the sweeper sets it per job with a plain
# hydra.job.env_set.ADVNETS_OPTUNA_TRIAL_ID=<id>: an override of a key that exists needs no "+", and launchers
# leave "hydra." overrides out of the job lines they print.
TRIAL_ENV_PACKAGE = "_global_.hydra.job.env_set"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.advnets_optuna_sweeper.sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds its sampler (seeded per trial), pruner and storage itself
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"trial_env@" + TRIAL_ENV_PACKAGE: "id"}])

    sampler: Any = MISSING
    direction: Any = "minimize"  # minimize | maximize, or a list of them (several objectives)
    storage: Any = None  # a database URL, or a node such as advnets.jobs.study_storage.open_storage
    study_name: str | None = None
    n_trials: int = 20  # new trials per invocation
    n_jobs: int = 2  # trials per batch, launched together
    max_failure_rate: float = 0.0  # per batch
    params: dict[str, str] | None = None  # Hydra's choice/range/interval/tag(log, ...) syntax
    custom_search_space: str | None = None  # the dotted name of a function (cfg, trial) -> None
    pruner: Any = None  # an Optuna pruner as a _target_ node (null: none)
    retry_failed: int = 0  # a failed trial's parameters are tried again up to this many times


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="advnets")
store.store(group="hydra/sweeper/trial_env", name="id", node={TRIAL_ID_ENV: ""}, provider="advnets")
for name, node in {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "grid": GridSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
}.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="advnets")
