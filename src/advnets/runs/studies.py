"""Optuna studies that outlive their sweeps: a trial a killed sweeper left RUNNING is marked failed when the study
is opened again, so samplers and tables never wait on a trial that nobody runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET = "advnets.runs.study_storage.open_storage"
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180


def is_sqlite(url: str) -> bool:
    """Whether a storage URL names a SQLite file (``sqlite:///PATH``, also with a driver: ``sqlite+pysqlite``)."""
    return url.startswith("sqlite")


def storage_url(node: Any) -> str | None:
    """The database URL of ``hydra.sweeper.storage``: the URL itself, or the ``url`` of an ``open_storage`` node."""
    if node is None:
        return None
    if isinstance(node, str):
        return node
    url = node.get("url") if hasattr(node, "get") else None
    return str(url) if url else None


def heartbeat_node(url: str) -> dict[str, Any]:
    """The ``hydra.sweeper.storage`` node that opens ``url`` with heartbeats (the default intervals)."""
    return {
        "_target_": TARGET,
        "url": url,
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
    }


def sqlite_file(storage: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` storage URL, else None."""
    return Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None


def fail_orphaned_trials(storage: str, study_name: str) -> int:
    """Mark the RUNNING trials of ``study_name`` in ``storage`` as FAIL; returns how many.

    Only for a storage that one sweeper uses at a time (SQLite): there, a RUNNING trial when a sweep starts
    belongs to a sweeper that was stopped. Several sweepers on one study (PostgreSQL) rely on heartbeats
    instead (advnets.runs.study_storage)."""
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
