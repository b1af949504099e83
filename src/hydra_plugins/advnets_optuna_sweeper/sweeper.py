"""``hydra/sweeper=optuna``: each batch of ``n_jobs`` trials asked of the study (``study.ask``), launched as
Hydra jobs, told back (``study.tell``): COMPLETE with the job's return value, PRUNED when the job's pruning
callback stopped it (advnets.search.pruning), FAIL when the job raised.

A study continued by the same command again gets ``n_trials`` new trials: the sampler of each trial is seeded
from the configured seed and the trial's number (``trial_seed``), so no random stream restarts where an earlier
sweep began."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from advnets.logs import get_logger

log = get_logger(__name__)


def trial_seed(seed: int, trial_number: int) -> int:
    """The sampler's seed for trial ``trial_number`` of a study swept with ``seed``: distinct for every pair, so
    neither a continued study nor two sweepers with neighbouring seeds draw from one random stream twice."""
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, trial_number]).generate_state(1)[0])


class OptunaSweeper(Sweeper):
    """advnets' Optuna sweeper: the engine is Optuna; this class bridges its ask/tell to Hydra's launcher."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any = None,
        custom_search_space: str | None = None,
        pruner: Any = None,
        retry_failed: int = 0,
    ) -> None:
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate}; allowed: a number in [0, 1]")
        self.sampler_node, self.pruner_node, self.storage_node = sampler, pruner, storage
        several = OmegaConf.is_list(direction) or isinstance(direction, list | tuple)
        self.directions = [str(d) for d in direction] if several else [str(direction)]
        self.study_name, self.n_trials, self.n_jobs = study_name, int(n_trials), max(1, int(n_jobs))
        self.max_failure_rate, self.retry_failed = float(max_failure_rate), int(retry_failed or 0)
        self.params = dict(params or {})
        self.custom_search_space = custom_search_space
        self.job_idx = 0
        self.failed_folders: list[str] = []  # the run folders of this sweep's failed jobs

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # -- the parts Optuna is built from -------------------------------------------------------------------------

    def _storage(self) -> Any:
        from hydra.utils import instantiate

        from advnets.jobs.study_storage import open_storage
        from advnets.store.studies import TARGET

        node = self.storage_node
        if node is None:
            return None
        if isinstance(node, str):
            return open_storage(node, max_retry=self.retry_failed)
        if str(node.get("_target_")) == TARGET:
            return instantiate(node, max_retry=self.retry_failed)
        return instantiate(node)

    def _sampler(self, trial_number: int, grid: dict[str, list[Any]] | None) -> Any:
        """The configured sampler, its seed (if any) advanced by ``trial_number``."""
        from hydra.utils import instantiate

        node = OmegaConf.to_container(self.sampler_node, resolve=True)
        assert isinstance(node, dict)
        seed = node.get("seed")
        if seed is not None:
            node["seed"] = trial_seed(int(seed), trial_number)
        made = instantiate(node)
        return made(grid) if grid is not None else made

    def _pruner(self) -> Any:
        """The configured pruner, ``NopPruner`` for none (Optuna's default would be a median pruner); a node that
        makes no Optuna pruner is the user's mistake, said in one line."""
        from hydra.utils import instantiate
        from optuna.pruners import BasePruner, NopPruner

        from advnets.errors import UserError

        if not self.pruner_node:
            return NopPruner()
        allowed = "allowed: an Optuna pruner, e.g. {_target_:optuna.pruners.MedianPruner,n_warmup_steps:5}, or null"
        shown = OmegaConf.to_yaml(self.pruner_node, resolve=False).strip().replace("\n", ", ")
        try:
            pruner = instantiate(self.pruner_node)
        except Exception as err:
            why = (str(err).splitlines() or [type(err).__name__])[0]
            raise UserError(f"hydra.sweeper.pruner={{{shown}}}: {why}; {allowed}") from None
        if not isinstance(pruner, BasePruner):
            raise UserError(f"hydra.sweeper.pruner={{{shown}}} is a {type(pruner).__name__}; {allowed}")
        return pruner

    def _custom(self) -> Any:
        from hydra.utils import get_method

        return get_method(self.custom_search_space) if self.custom_search_space else None

    # -- the sweep ----------------------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        from advnets.errors import UserError, fail
        from advnets.jobs.study_storage import one_sweeper
        from advnets.search.space import grid, search_space
        from advnets.store.studies import storage_url

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        for key in fixed:
            distributions.pop(key, None)
        is_grid = "GridSampler" in str(OmegaConf.select(self.sampler_node, "_target_"))
        try:
            grid_values = grid(distributions) if is_grid else None
        except ValueError as err:
            fail(str(err))
        n_trials = self.n_trials
        if grid_values is not None:
            size = 1
            for values in grid_values.values():
                size *= len(values)
            n_trials = min(n_trials, size)
        try:
            pruner = self._pruner()
            with one_sweeper(storage_url(self.storage_node)):  # SQLite: one sweeper at a time, the others refused
                self._run_study(self._storage(), pruner, distributions, fixed, grid_values, n_trials)
        except UserError as err:
            fail(str(err))

    def _run_study(
        self,
        storage: Any,
        pruner: Any,
        distributions: dict[str, Any],
        fixed: dict[str, str],
        grid_values: Any,
        n_trials: int,
    ) -> None:
        """The study opened (or continued), its trials asked, launched and told in batches, its report written."""
        import optuna

        from advnets.jobs.study_storage import fail_running, fail_stale, heartbeats_on, retry_callback
        from advnets.search.study_report import record_study
        from advnets.store.studies import storage_url

        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self._sampler(0, grid_values),
            pruner=pruner,
            directions=self.directions,
            load_if_exists=True,
        )
        record_study(Path(str(self.config.hydra.sweep.dir)), study.study_name, storage_url(self.storage_node))
        retry = retry_callback(self.retry_failed)
        held = len(study.get_trials(deepcopy=False))
        if storage is not None and not heartbeats_on(storage):
            failed = fail_running(study, retry)
            if failed:
                log.info(
                    "%d trial(s) of study %s left RUNNING by a stopped sweep: marked FAIL", failed, study.study_name
                )
        log.info(
            "Study %s (%d trial(s) so far): %d new trial(s), %d at a time; sampler %s, pruner %s",
            study.study_name,
            held,
            n_trials,
            self.n_jobs,
            type(study.sampler).__name__,
            type(study.pruner).__name__ if self.pruner_node else "none",
        )
        to_go = n_trials
        while to_go > 0:
            if storage is not None and heartbeats_on(storage):
                fail_stale(study, getattr(storage, "grace_period", None))
            batch = min(to_go, self.n_jobs)
            trials = [self._ask(study, distributions, fixed, grid_values) for _ in range(batch)]
            self._run_batch(study, trials, fixed, retry)
            to_go -= batch
        self._finish(study)

    def _ask(self, study: Any, distributions: dict[str, Any], fixed: dict[str, str], grid_values: Any) -> Any:
        """A new trial, drawn by a sampler seeded for its number; its fixed overrides kept as user attributes."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
            study.sampler = self._sampler(len(study.get_trials(deepcopy=False)), grid_values)
            trial = study.ask()
        study.sampler = self._sampler(trial.number, grid_values)  # drawn when suggested: the number's own stream
        for name, dist in distributions.items():
            trial._suggest(name, dist)
        custom = self._custom()
        if custom is not None:
            custom(self.config, trial)
        overlap = set(trial.params) & set(fixed)
        if overlap:
            raise ValueError(f"parameters both fixed and searched: {sorted(overlap)}")
        for name, value in fixed.items():
            trial.set_user_attr(name, value)
        return trial

    def _run_batch(self, study: Any, trials: list[Any], fixed: dict[str, str], retry: Any) -> None:
        from optuna.trial import TrialState

        from advnets.jobs.study_storage import Heartbeats
        from advnets.search.trials import PRUNED_ATTR, RUN_FOLDER_ATTR, TRIAL_ID_ENV

        overrides = []
        for trial in trials:
            values = {**trial.params, **fixed}
            job = [f"{name}={value}" for name, value in values.items()]
            # a string (quoted); a hydra. override, so launchers leave it out of the job lines they print
            overrides.append([*job, f"hydra.job.env_set.{TRIAL_ID_ENV}='{trial._trial_id}'"])
        storage = study._storage
        with Heartbeats(storage, [t._trial_id for t in trials]):
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        failures = []
        for trial, ret in zip(trials, returns, strict=True):
            folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
            if folder:
                trial.set_user_attr(RUN_FOLDER_ATTR, str(folder))
            attrs = storage.get_trial(trial._trial_id).user_attrs
            if PRUNED_ATTR in attrs and ret.status.name != "FAILED":
                study.tell(trial, state=TrialState.PRUNED)
                continue
            try:
                value = ret.return_value  # raises the job's own exception for a failed job
                values = [float(v) for v in value] if len(self.directions) > 1 else [float(value)]
            except Exception as err:
                study.tell(trial, state=TrialState.FAIL)
                log.warning("trial %d failed: %s", trial.number, err)
                failures.append(err)
                self.failed_folders.append(str(folder or "?"))
                if retry is not None:
                    retry(study, storage.get_trial(trial._trial_id))
                continue
            try:
                study.tell(trial, values=values)
            except RuntimeError as err:  # the grid sampler, its grid done, stops the study: told all the same
                if "Study.stop" not in str(err):
                    raise
        if failures and len(failures) / len(returns) > self.max_failure_rate:
            log.error(
                "%d of %d trial(s) of this batch failed, over hydra.sweeper.max_failure_rate=%s: the sweep stops",
                len(failures),
                len(returns),
                self.max_failure_rate,
            )
            from advnets.jobs.hydra_callbacks import failed_jobs_line  # the line every sweep with failed jobs ends with

            log.error("%s", failed_jobs_line(self.failed_folders, self.job_idx))
            for ret in returns:
                ret.return_value  # noqa: B018 (raises the first failed job's exception, with its traceback)

    def _finish(self, study: Any) -> None:
        """``optimization_results.yaml`` and the study's tables and plots in the sweep folder."""
        from advnets.search.study_report import write_study_report

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        finished = [t for t in study.get_trials(deepcopy=False) if t.values is not None and t.state.name == "COMPLETE"]
        results: dict[str, Any] = {"name": "optuna"}
        if finished and len(self.directions) == 1:
            best = study.best_trial
            results.update({"best_params": best.params, "best_value": best.value})
            objective = OmegaConf.select(self.config, "objective", default=None) or "value"
            log.info("Best parameters: %s", best.params)
            from advnets.search.trials import RUN_FOLDER_ATTR

            folder = best.user_attrs.get(RUN_FOLDER_ATTR)  # the study's trial numbers run on across continued sweeps
            where = f"study trial {best.number}" + (f", run folder {folder}" if folder else "")
            log.info("Best %s = %s (%s)", objective, best.value, where)
        elif finished:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        written = write_study_report(study, sweep_dir)
        if written:
            log.info("Study %s: %s", study.study_name, ", ".join(str(p) for p in written))
