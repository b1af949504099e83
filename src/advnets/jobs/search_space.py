"""A sweep checked before its first job: the configs its jobs will really run, composed by Hydra and checked.

Anything Hydra can sweep is taken as Hydra takes it: config groups and experiments (``optimizer=adam,paper_sgd``,
``experiment=a,b``), values, ``range()``, ``choice()``, ``glob()``, and the Optuna sweeper's ``choice()``,
``interval()`` and ``range()``, also over a group. The basic sweeper's jobs are exactly the ones it will launch;
an Optuna study's trials are not known in advance, so every combination of its swept groups is composed, each
with every swept value in turn (each choice, both ends of an interval or range), plus a few trials drawn from a
``custom_search_space``. Each composed config goes through ``check`` (the schema and the run's own checks).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from advnets.errors import UserError

MAX_JOBS = 1000
"""A sweep of more jobs is checked on its first MAX_JOBS (each check composes one config)."""
CUSTOM_TRIALS = 8
"""Trials drawn from an Optuna ``custom_search_space`` to check (its parameters exist only when drawn)."""


def _parser() -> Any:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    return OverridesParser.create(config_loader=loader)


def sweep_arguments(config: DictConfig) -> list[str]:
    """What the sweeper sweeps: ``hydra.sweeper.params`` and the command line's overrides (Hydra's own left out)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    task = OmegaConf.select(config, "hydra.overrides.task") or []
    return [f"{k}={v}" for k, v in params.items()] + [str(o) for o in task if not str(o).startswith("hydra")]


def _parse(arguments: Sequence[str]) -> list[Any]:
    parser = _parser()
    parsed = []
    for argument in arguments:
        try:
            parsed += parser.parse_overrides([argument])  # sets the loader glob() needs
        except Exception as err:
            raise UserError(f"{argument}: {str(err).splitlines()[0]}") from None
    return parsed


def basic_jobs(arguments: Sequence[str]) -> list[list[str]]:
    """The basic sweeper's jobs, as it will launch them (every combination of the swept values)."""
    from advnets.internals import split_sweep_arguments

    try:
        batches = split_sweep_arguments(_parse(arguments))
    except UserError:
        raise
    except Exception as err:
        raise UserError(str(err).splitlines()[0]) from None
    return [list(job) for batch in batches for job in batch]


def _values(override: Any) -> list[Any]:
    """The values of an Optuna-swept override worth checking: each choice, both ends of an interval or range."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return list(sweep.list)
    if isinstance(sweep, RangeSweep):
        step = sweep.step or 1
        last = sweep.start + step * max(0, -(-(sweep.stop - sweep.start) // step) - 1)
        return [sweep.start, last]
    if isinstance(sweep, IntervalSweep):
        ends = [sweep.start, sweep.end]
        integer = all(isinstance(v, int) for v in ends)
        return [int(v) for v in ends] if integer else [float(v) for v in ends]
    return [sweep]


def _text(key: str, value: Any) -> str:
    return f"{key}={value}"  # the Optuna sweeper's own spelling of a trial's override


def optuna_jobs(arguments: Sequence[str], groups: set[str], custom: Callable | None, config: DictConfig) -> list:
    """Overrides covering an Optuna search: every combination of its swept groups, each with every swept value
    in turn, plus ``CUSTOM_TRIALS`` trials drawn from ``custom`` (a ``custom_search_space`` function)."""
    fixed, swept_groups, swept_values = [], [], []
    for override in _parse(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(f"{key}={override.get_value_element_as_str()}")
        elif override.key_or_group in groups:
            swept_groups.append([_text(key, v) for v in _values(override)])
        else:
            swept_values.append([_text(key, v) for v in _values(override)])
    jobs: list[list[str]] = []
    for combination in itertools.product(*swept_groups):
        first = [values[0] for values in swept_values]
        jobs.append([*fixed, *combination, *first])
        for i, values in enumerate(swept_values):
            jobs += [[*fixed, *combination, *first[:i], value, *first[i + 1 :]] for value in values[1:]]
    if custom is not None:
        jobs += _custom_trials(fixed, swept_groups, swept_values, custom, config)
    return jobs


def _custom_trials(fixed: list, swept_groups: list, swept_values: list, custom: Callable, config: DictConfig) -> list:
    """Trials of an in-memory study (random sampler, fixed seed) through the ``custom_search_space`` function."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    swept = [(job[0].split("=", 1)[0], [j.split("=", 1)[1] for j in job]) for job in swept_groups + swept_values]
    jobs = []
    for _ in range(CUSTOM_TRIALS):
        trial = study.ask()
        for key, values in swept:
            trial.suggest_categorical(key, values)
        custom(config, trial)
        jobs.append([*fixed, *(_text(k, v) for k, v in trial.params.items())])
    return jobs


def jobs_of(config: DictConfig) -> list[list[str]]:
    """The overrides of the jobs to check for this multirun's sweeper."""
    arguments = sweep_arguments(config)
    target = str(OmegaConf.select(config, "hydra.sweeper._target_") or "")
    if "optuna" not in target.lower():
        return basic_jobs(arguments)
    groups = set(OmegaConf.select(config, "hydra.runtime.choices") or {})
    custom_name = OmegaConf.select(config, "hydra.sweeper.custom_search_space")
    custom = None
    if custom_name:
        from hydra.utils import get_method

        try:
            custom = get_method(str(custom_name))
        except Exception:
            raise UserError(
                f"hydra.sweeper.custom_search_space={custom_name}; allowed: the dotted name of an importable function"
            ) from None
    return optuna_jobs(arguments, groups, custom, config)


def composed_jobs(config: DictConfig, jobs: Sequence[Sequence[str]]) -> Iterator[tuple[list[str], DictConfig]]:
    """Each job's config as Hydra will compose it when the job starts (``hydra:`` resolvers set for it)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    loader = GlobalHydra.instance().config_loader()
    for job in list(jobs)[:MAX_JOBS]:
        overrides = list(job)
        try:
            cfg = loader.load_sweep_config(config, overrides)
        except Exception as err:
            raise UserError(f"sweep job {' '.join(overrides)}: {_composition_error(err)}") from None
        HydraConfig.instance().set_config(cfg)
        OmegaConf.set_struct(cfg, False)
        OmegaConf.update(cfg, "paths.output_dir", "sweep-job", force_add=True)  # the job's folder does not exist yet
        yield overrides, cfg


def _composition_error(err: BaseException) -> str:
    """Hydra's message for a job that does not compose, on one line; a key this job's config lacks said so."""
    import re

    from advnets.errors import one_line

    missing = re.search(r"Could not override '([^']+)'", str(err))
    if missing:
        return f"{missing.group(1)} is not a key of this job's config (its groups do not define it)"
    return one_line(err) or str(err).splitlines()[0]


def check_jobs(config: DictConfig, checks: Sequence[Callable[[DictConfig], None]]) -> int:
    """Compose every job of the sweep once, then run each of ``checks`` on every job in turn (cheap checks
    first); the first mistake is one UserError naming the job's overrides. Returns the number of jobs checked.
    HydraConfig is left set to the sweep's own config."""
    from hydra.core.hydra_config import HydraConfig

    try:
        composed = list(composed_jobs(config, jobs_of(config)))
        for check in checks:
            for overrides, cfg in composed:
                HydraConfig.instance().set_config(cfg)
                try:
                    check(cfg)
                except UserError as err:
                    raise UserError(f"sweep job {' '.join(overrides) or '(no overrides)'}: {err}") from None
    finally:
        HydraConfig.instance().set_config(config)
    return len(composed)
