"""Optuna studies that outlive their sweeps: a trial a killed sweeper left RUNNING is marked failed when the study
is opened again, so samplers and tables never wait on a trial that nobody runs."""

from __future__ import annotations

from pathlib import Path


def sqlite_file(storage: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` storage URL, else None."""
    return Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None


def fail_orphaned_trials(storage: str, study_name: str) -> int:
    """Mark the RUNNING trials of ``study_name`` in ``storage`` as FAIL; returns how many.

    Only for a storage that one sweeper uses at a time (SQLite): there, a RUNNING trial when a sweep starts
    belongs to a sweeper that was stopped. Several sweepers on one study (PostgreSQL) rely on heartbeats
    instead (``heartbeat_interval`` / ``grace_period``)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna.storages.RDBStorage(storage)
    try:
        study_id = rdb.get_study_id_from_name(study_name)
    except KeyError:
        return 0  # a new study
    running = rdb.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        rdb.set_trial_state(rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number), TrialState.FAIL)
    return len(running)
