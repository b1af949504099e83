"""The database of an Optuna sweep (``hydra.sweeper.storage``): SQLite for one sweeper, a server (PostgreSQL)
for several sweepers on one study.

Several sweepers cannot tell a trial that another sweeper runs from one whose sweeper was stopped; Optuna's
heartbeats can. A server's study is opened as Optuna's ``RDBStorage`` with ``heartbeat_interval`` and
``grace_period``: the sweeper marks the trials it runs alive (``Heartbeats``), and before each batch Optuna marks
FAIL the trials nobody marked for ``grace_period`` seconds (``optuna.storages.fail_stale_trials``), handing each
to ``failed_trial_callback`` (a retry, with ``hydra.sweeper.retry_failed``). On SQLite, one sweeper at a time
(``one_sweeper`` holds a lock beside the file for the whole sweep and refuses a second one), every RUNNING trial
when a sweep starts was left by a stopped sweeper: ``fail_running`` fails them at once."""

from __future__ import annotations

import fcntl
import inspect
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from advnets.errors import UserError
from advnets.logs import get_logger
from advnets.store.studies import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, is_sqlite, sqlite_file, with_driver

log = get_logger(__name__)

SCHEMA_LOCK_KEY = 20141  # the PostgreSQL advisory lock held while a sweeper opens (and creates) the study tables


def retry_callback(max_retry: int) -> Callable[[Any, Any], None] | None:
    """Optuna's callback that enqueues a failed trial's parameters again, at most ``max_retry`` times per trial
    (``RetryHeartbeatStaleTrialCallback``, called ``RetryFailedTrialCallback`` before Optuna 4.9); None for 0."""
    if max_retry <= 0:
        return None
    import optuna.storages as storages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" / "deprecated" notices of the same callback
        retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
        return retry(max_retry=int(max_retry))


def open_storage(
    url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S, max_retry: int = 0
) -> Any:
    """The study's ``RDBStorage``: SQLite as it is (one sweeper), any other database with Optuna's heartbeats and,
    when ``max_retry`` > 0, a retry of each trial found stale. A database made by an older Optuna is refused with
    one line naming ``optuna storage upgrade``."""
    from optuna.storages import RDBStorage

    kwargs: dict[str, Any] = {}
    if not is_sqlite(url):
        kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": int(grace_period)}
        callback = retry_callback(max_retry)
        if callback is not None:
            stale = "heartbeat_stale_trial_callback"
            name = stale if stale in inspect.signature(RDBStorage).parameters else "failed_trial_callback"
            kwargs[name] = callback
    try:
        with _schema_lock(with_driver(url)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
            return RDBStorage(with_driver(url), **kwargs)
    except RuntimeError as err:
        if "storage upgrade" in str(err):
            raise UserError(
                f"hydra.sweeper.storage={hide_password(url)} holds a study of an older Optuna; upgrade it once "
                f"with: optuna storage upgrade --storage '{hide_password(url)}'"
            ) from None
        raise


def hide_password(url: str) -> str:
    """A database URL as it may be shown: its password hidden."""
    from sqlalchemy.engine.url import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


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


def heartbeats_on(storage: Any) -> bool:
    """Whether ``storage`` keeps Optuna heartbeats (a server database opened by ``open_storage``)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def fail_stale(study: Any, grace_period: int | None) -> None:
    """Optuna's ``fail_stale_trials``: trials with no heartbeat for the grace period (their sweeper was stopped)
    are marked FAIL, and each is retried when the storage has a retry callback."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for number in sorted(before - after):
        log.info(
            "trial %d of study %s had no heartbeat for %s s (its sweeper was stopped): marked FAIL",
            number,
            study.study_name,
            grace_period,
        )


@contextmanager
def one_sweeper(url: str | None) -> Iterator[None]:
    """Held for a whole sweep on a SQLite study: an exclusive lock on ``<database>.sweeper.lock`` (removed at the
    end; the system drops the lock of a killed sweeper). A second sweeper on the same file meanwhile is one
    UserError line before it touches the study, so it never fails the first one's running trials as left over
    (``fail_running``). Other databases (heartbeats) and in-memory studies: nothing to hold."""
    database = sqlite_file(url) if url else None
    if database is None or not database.parent.is_dir():
        yield
        return
    lock = database.with_name(database.name + ".sweeper.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"hydra.sweeper.storage={url} is in use by another sweeper ({holder}); SQLite serves one sweeper "
                "at a time: wait for it to end, or put several sweepers on one PostgreSQL study "
                "(hydra.sweeper.storage.url=postgresql://USER@HOST/DB)"
            ) from None
        if os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the sweeper before removed the file as this one locked it: lock the new file
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held, so no sweeper locks a file that is going away
        os.close(fd)


def fail_running(study: Any, retry: Callable[[Any, Any], None] | None) -> int:
    """Mark FAIL every RUNNING trial of a study that one sweeper uses at a time (SQLite: they belong to a sweeper
    that was stopped), each retried by ``retry`` when given; returns how many."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        failed = study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if retry is not None:
            retry(study, failed)
    return len(running)


class Heartbeats:
    """While a batch of trials runs: each marked alive every ``heartbeat_interval`` seconds (a daemon thread), as
    ``study.optimize`` does for its trials; nothing for a storage without heartbeats."""

    def __init__(self, storage: Any, trial_ids: Iterable[int]) -> None:
        self.storage, self.trial_ids = storage, list(trial_ids)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeats:
        if heartbeats_on(self.storage):
            self._beat_all()  # at once: a sweeper killed before its first beat leaves a stale trial
            self.thread = threading.Thread(target=self._beat, name="advnets-study-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(float(self.storage.get_heartbeat_interval())):
            self._beat_all()

    def _beat_all(self) -> None:
        for trial_id in self.trial_ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # the database is out of reach right now: the next beat tries again
                continue
