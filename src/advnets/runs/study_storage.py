"""The database of an Optuna sweep (``hydra.sweeper.storage``): SQLite for one sweeper, a server (PostgreSQL)
for several sweepers on one study.

Several sweepers cannot tell a trial that another sweeper runs from one whose sweeper was killed; Optuna's
heartbeats can. hydra-optuna-sweeper asks for trials one by one (``study.ask``), where Optuna records no
heartbeats (only ``study.optimize`` does), so ``HeartbeatStorage`` does it: while this process holds a RUNNING
trial, it marks it alive every ``heartbeat_interval`` seconds, and before each new trial it marks FAIL the
trials nobody marked for ``grace_period`` seconds (their sweeper was stopped)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from advnets import internals
from advnets.logs import get_logger
from advnets.runs.studies import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, is_sqlite

log = get_logger(__name__)


def open_storage(
    url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S
) -> str | RDBStorage:
    """What the Optuna sweeper opens: a SQLite URL as it is (one sweeper; advnets.runs.studies fails what a
    stopped sweep left RUNNING), any other database as a ``HeartbeatStorage``."""
    if is_sqlite(url):
        return url
    return HeartbeatStorage(url, heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period))


SCHEMA_LOCK_KEY = 20141  # the PostgreSQL advisory lock held while a sweeper opens (and creates) the study tables


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Held while Optuna creates its tables: on PostgreSQL, an advisory lock, so that sweepers started at once on
    a fresh database create them one after another (at the same time, one fails: ``studydirection`` already
    exists); other databases as they are."""
    import sqlalchemy

    if not url.startswith("postgresql"):
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as db:
            db.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                db.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


class HeartbeatStorage(RDBStorage):
    """An RDB storage whose RUNNING trials, while this process holds them, get a heartbeat every
    ``heartbeat_interval`` seconds (a daemon thread); a new trial is created only after the study's stale
    trials (no heartbeat for ``grace_period`` seconds) are marked FAIL."""

    def __init__(self, url: str, heartbeat_interval: int, grace_period: int) -> None:
        with _schema_lock(url):  # sweepers started together on a fresh database would race to create the tables
            super().__init__(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._beats: threading.Thread | None = None

    def __repr__(self) -> str:  # the sweeper logs "Storage: ..."; never the password
        from sqlalchemy.engine.url import make_url

        url = make_url(self.url).render_as_string(hide_password=True)
        return f"{url} (heartbeats every {self.heartbeat_interval} s)"

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        self._fail_stale(study_id)
        trial = internals.rdb_create_new_trial(self, study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self._hold(internals.trial_id(trial))
        return trial

    def set_trial_state(self, trial_id: int, state: TrialState) -> bool:
        changed = super().set_trial_state(trial_id, state)
        if changed and state == TrialState.RUNNING:  # a WAITING (enqueued) trial this process now runs
            self._hold(trial_id)
        return changed

    def _fail_stale(self, study_id: int) -> None:
        name = self.get_study_name_from_id(study_id)
        for trial_id in self.fail_stale_trials(study_id):
            number = self.get_trial_number_from_id(trial_id)
            log.info(
                "trial %d of study %s had no heartbeat for %d s (its sweeper was stopped): marked FAIL",
                number,
                name,
                self.grace_period,
            )

    def _hold(self, trial_id: int) -> None:
        self.record_heartbeat(trial_id)  # at once: a sweeper killed before its first beat leaves a stale trial
        with self._held_lock:
            self._held.add(trial_id)
            if self._beats is None:
                self._beats = threading.Thread(target=self._beat, name="advnets-study-heartbeat", daemon=True)
                self._beats.start()

    def _beat(self) -> None:
        stop = threading.Event()
        while not stop.wait(float(self.heartbeat_interval)):
            with self._held_lock:
                held = list(self._held)
            for trial_id in held:
                try:
                    if self.get_trial(trial_id).state == TrialState.RUNNING:
                        self.record_heartbeat(trial_id)
                        continue
                except Exception:  # the database is out of reach right now: the next beat tries again
                    continue
                with self._held_lock:
                    self._held.discard(trial_id)
