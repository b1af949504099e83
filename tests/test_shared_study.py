"""Several sweepers, one study: Optuna sweeps at once on a PostgreSQL study, and a killed sweeper's trial.

A throwaway PostgreSQL server (Debian's `postgresql` package: initdb + pg_ctl, as the `postgres` user when run as
root) is started in a temporary folder on a loopback port for this module. Without the server's programs or a
PostgreSQL driver (pip install 'advnets[cluster]') the tests skip, unless ADVNETS_REQUIRE_POSTGRES=1 (CI), where
they fail.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from advnets import CONF_DIR
from advnets.jobs.hydra_callbacks import SweepStudy
from advnets.store.studies import with_driver

from conftest import REPO, cli_env

SWEEP = [
    sys.executable,
    "-m",
    "advnets.cli.train",
    "-m",
    "hparams_search=optuna",
    "experiment=quickstart",
    "hydra.sweeper.n_jobs=1",
    "callbacks.parzen_monitor.every_n_epochs=1",
    "callbacks.parzen_monitor.n_samples=300",
    "callbacks.sample_grid.every_n_epochs=0",
    "callbacks.progress_bar=null",
    "evaluate=false",
    "logger=none",
    "threads=1",
]
"""An Optuna sweep of quickstart trials, one trial at a time (several such sweepers share a study)."""


def _unavailable(why: str) -> None:
    if os.environ.get("ADVNETS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"ADVNETS_REQUIRE_POSTGRES=1 but {why}")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a fresh PostgreSQL server on a loopback port, stopped and removed after the module."""
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")):
        _unavailable("no PostgreSQL driver is installed (pip install 'advnets[cluster]')")
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or [Path(p) for p in [shutil.which("pg_ctl")] if p]
    if not found:
        _unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = found[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="advnets-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("no `postgres` user to run the server as")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"

    def run(*args: str) -> None:
        proc = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if data.is_dir():
            subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _trials(url: str, study: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study, storage=with_driver(url)).get_trials(deepcopy=False)
    except KeyError:
        return []  # the study does not exist yet


def _heartbeats(url: str) -> dict[int, object]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(with_driver(url))
    try:
        with engine.connect() as db:
            return dict(db.execute(sqlalchemy.text("SELECT trial_id, heartbeat FROM trial_heartbeats")).all())
    finally:
        engine.dispose()


def _runs(sweep: Path) -> list[tuple]:
    """(lr, update, k, objective) of every finished job of a sweep folder, from its own config and metrics."""
    found = []
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra" / "config.yaml").is_file()):
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        score = json.loads((job / "metrics.json").read_text())["objective_score"]
        found.append((round(float(cfg.optimizer.lr), 12), cfg.game["update"], int(cfg.game.k), round(score, 6)))
    return found


@pytest.mark.cluster
def test_two_sweepers_at_once_share_one_study_and_every_trial_is_recorded_once(postgres: str, tmp_path: Path) -> None:
    study, n_each = "shared", 2
    storage = [
        f"hydra.sweeper.storage.url={postgres}",
        "hydra.sweeper.storage.heartbeat_interval=1",
        "hydra.sweeper.storage.grace_period=10",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_each}",
        "trainer.max_epochs=1",
    ]
    procs, logs = [], []
    for seed in (1, 2):  # one sampler seed each: their random first proposals differ
        cmd = [*SWEEP, *storage, f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={tmp_path / f's{seed}'}"]
        logs.append((tmp_path / f"s{seed}.log").open("w"))
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=logs[-1], stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], [(tmp_path / f"s{s}.log").read_text()[-3000:] for s in (1, 2)]

    trials = _trials(postgres, study)
    # as many trials as both asked for, numbered once each, all finished: none lost, none duplicated
    assert len(trials) == 2 * n_each and sorted(t.number for t in trials) == list(range(2 * n_each))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    recorded = sorted(
        (round(t.params["optimizer.lr"], 12), t.params["game.update"], t.params["game.k"], round(t.value, 6))
        for t in trials
    )
    ran = [_runs(tmp_path / f"s{seed}") for seed in (1, 2)]
    assert [len(r) for r in ran] == [n_each, n_each]
    assert recorded == sorted(ran[0] + ran[1])  # each trial is exactly one job of one of the two sweeps
    # the sweepers ran side by side (their trials overlap in time), each trial kept alive by its heartbeats
    spans = {}
    for seed, sweep_runs in zip((1, 2), ran, strict=True):
        mine = [t for t in trials if round(t.params["optimizer.lr"], 12) in {r[0] for r in sweep_runs}]
        spans[seed] = (min(t.datetime_start for t in mine), max(t.datetime_complete for t in mine))
    assert spans[1][0] < spans[2][1] and spans[2][0] < spans[1][1], spans
    assert set(_heartbeats(postgres)) == {t._trial_id for t in trials}


@pytest.mark.cluster
def test_a_killed_sweepers_running_trial_is_marked_failed_by_the_next_sweeper(postgres: str, tmp_path: Path) -> None:
    study = "killed"
    storage = [
        f"hydra.sweeper.storage.url={postgres}",
        "hydra.sweeper.storage.heartbeat_interval=1",
        "hydra.sweeper.storage.grace_period=3",
        f"hydra.sweeper.study_name={study}",
        "hydra.sweeper.n_trials=1",
    ]
    log = (tmp_path / "killed.log").open("w")
    cmd = [*SWEEP, *storage, "trainer.max_epochs=300", f"hydra.sweep.dir={tmp_path / 'killed'}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.time() + 300
        while not any(t.state.name == "RUNNING" for t in _trials(postgres, study)) or not _heartbeats(postgres):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < end, "no RUNNING trial within 300 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its trial, mid-training
        proc.wait(timeout=60)
    (orphan,) = _trials(postgres, study)
    assert orphan.state.name == "RUNNING"  # nobody failed it yet: it would stay RUNNING forever
    time.sleep(4)  # longer than grace_period since its last heartbeat

    cmd = [*SWEEP, *storage, "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path / 'next'}"]
    nxt = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert nxt.returncode == 0, nxt.stdout[-2000:] + nxt.stderr[-3000:]
    assert (
        f"advnets: trial 0 of study {study} had no heartbeat for 3 s (its sweeper was stopped): marked FAIL"
        in nxt.stdout
    )
    states = {t.number: t.state.name for t in _trials(postgres, study)}
    assert states == {0: "FAIL", 1: "COMPLETE"}


def test_a_database_url_gets_heartbeats_and_sqlite_stays_as_it_was(tmp_path: Path) -> None:
    """``hydra.sweeper.storage=postgresql://...`` (a plain URL) is opened with Optuna's heartbeats; SQLite, the
    default for one sweeper, without them."""
    from hydra.utils import instantiate

    def storage_after_start(*overrides: str) -> object:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                "train",
                overrides=["experiment=quickstart", "hparams_search=optuna", f"paths.log_dir={tmp_path}", *overrides],
                return_hydra_config=True,
            )
        OmegaConf.set_readonly(cfg.hydra, True)  # as Hydra hands it to the callbacks
        HydraConfig.instance().set_config(cfg)  # as the callbacks before this one do
        try:
            SweepStudy().on_multirun_start(config=cfg)
        finally:
            HydraConfig.instance().cfg = None
        return cfg.hydra.sweeper.storage

    node = storage_after_start("hydra.sweeper.storage=postgresql://sweeper@db.example.org/studies")
    assert OmegaConf.to_container(node) == {
        "_target_": "advnets.jobs.study_storage.open_storage",
        "url": "postgresql://sweeper@db.example.org/studies",
        "heartbeat_interval": 60,
        "grace_period": 180,
    }
    assert storage_after_start("hydra.sweeper.storage.url=postgresql://h/db")["heartbeat_interval"] == 60

    default = storage_after_start()
    assert default["url"] == f"sqlite:///{tmp_path}/optuna.db"
    opened = instantiate(default)
    assert opened.url == default["url"] and opened.get_heartbeat_interval() is None  # one sweeper: no heartbeats
    url = f"sqlite:///{tmp_path}/other.db"
    assert storage_after_start(f"hydra.sweeper.storage={url}") == url  # a plain SQLite URL stays a URL
