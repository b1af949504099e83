"""Beyond one machine: one DDP job across two SLURM nodes, its checks before submission and at its rendezvous.

The two nodes are the localhost cluster's two-node layout (scripts/slurm-localhost.sh up two-node: nodes n1 and
n2 in partition `pair`, one CPU each here, their names in /etc/hosts). It is started when it is not up; without
SLURM the cluster tests skip, unless ADVNETS_REQUIRE_SLURM=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from advnets import rendezvous
from advnets.errors import UserError
from advnets.jobs import slurm_request
from advnets.rendezvous import Rendezvous, meet

from conftest import REPO, assert_user_error, cli_env, sacct_states
from wandb_log import read_records, run_info

SCRIPT = REPO / "scripts" / "slurm-localhost.sh"
PAIR = "pair"

SLURM_DDP = [
    sys.executable,
    "-m",
    "advnets.cli.train",
    "-m",
    "hydra/launcher=slurm",
    f"hydra.launcher.partition={PAIR}",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=10",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "experiment=quickstart",
    "callbacks.progress_bar=null",
    "eval.n_samples=300",
    "threads=1",
]
"""DDP on CPU through the SLURM launcher, on the two-node partition, one CPU per task."""
TWO_NODES = [*SLURM_DDP, "trainer.num_nodes=2", "trainer.devices=1"]
"""One job of two tasks, one per node."""


def _unavailable(why: str) -> None:
    if os.environ.get("ADVNETS_REQUIRE_SLURM") == "1":
        pytest.fail(f"ADVNETS_REQUIRE_SLURM=1 but {why}")
    pytest.skip(why)


def _has_pair() -> bool:
    out = subprocess.run(["sinfo", "-h", "-p", PAIR, "-o", "%D %T"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.split()[:1] == ["2"] and "idle" in out.stdout


@pytest.fixture(scope="module")
def two_nodes() -> None:
    """The two-node layout of the localhost cluster (started if needed), else skip; fail under CI."""
    if not (shutil.which("sbatch") and shutil.which("slurmctld") and shutil.which("munged")):
        _unavailable("SLURM is not installed (bash scripts/slurm-localhost.sh install)")
    healthy = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0
    if not (healthy and _has_pair()):
        up = subprocess.run(["bash", str(SCRIPT), "up", "two-node"], capture_output=True, text=True, timeout=180)
        if up.returncode != 0:
            _unavailable(f"the two-node localhost cluster does not start: {(up.stdout + up.stderr)[-800:]}")
    end = time.time() + 30
    while not _has_pair():
        if time.time() > end:
            _unavailable(f"partition {PAIR} has no two idle nodes")
        time.sleep(0.5)


def _task_logs(sweep: Path, job: str, task: int) -> str:
    """What task ``task`` of SLURM job ``job`` wrote (stdout, then stderr)."""
    folder = sweep / ".submitit" / job
    return "".join((folder / f"{job}_{task}_log.{kind}").read_text() for kind in ("out", "err"))


@pytest.mark.slurm
@pytest.mark.cluster
def test_one_ddp_job_spans_two_nodes_and_resumes_after_a_requeue(two_nodes: None, tmp_path: Path) -> None:
    epochs = 30
    sweep = tmp_path / "sweep"
    cmd = [
        *TWO_NODES,
        f"trainer.max_epochs={epochs}",
        "callbacks.parzen_monitor.every_n_epochs=10",
        "callbacks.parzen_monitor.n_samples=300",
        "callbacks.sample_grid.every_n_epochs=30",
        "+callbacks.digest._target_=probes.ParamDigest",
        "seed=1",
        f"hydra.sweep.dir={sweep}",
    ]
    log = (tmp_path / "sweep.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
    run = sweep / "0"
    try:
        end = time.time() + 300
        while not ((run / "checkpoints" / "last.ckpt").exists() and list(run.glob("wandb/offline-run-*"))):
            assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            assert time.time() < end, "no checkpoint within 300 s"
            time.sleep(0.2)
        (job,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
        requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        rc = proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", "--name=advnets-quickstart", f"--partition={PAIR}"], capture_output=True)
    assert rc == 0, (tmp_path / "sweep.log").read_text()[-4000:]

    # one SLURM job: two nodes, one task on each (= trainer.devices), started again by the requeue
    script = (sweep / ".submitit" / job / f"{job}_submission.sh").read_text()
    for flag in ("--nodes=2", "--ntasks-per-node=1", f"--partition={PAIR}"):
        assert f"#SBATCH {flag}" in script, flag
    end = time.time() + 60
    while sacct_states(job).get(job, ("", 0))[0] != "COMPLETED" and time.time() < end:
        time.sleep(0.5)
    assert sacct_states(job)[job][0] == "COMPLETED" and sacct_states(job)[job][1] >= 1, sacct_states(job)

    # the two ranks ran on different nodes, as one world, and end with the same parameters
    ranks = [json.loads((run / f"params_rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["node"] for r in ranks) == ["n1", "n2"], ranks
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["sum"] == ranks[1]["sum"] and ranks[0]["abs_sum"] == ranks[1]["abs_sum"]
    assert ranks[0]["first"] == ranks[1]["first"]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == epochs * 6 * 2  # 6 batches per rank and epoch

    # the rerun resumed from the run folder's checkpoint (rank zero says so), on both ranks (the same final step)
    logs = _task_logs(sweep, job, 0)
    assert f"Restoring states from the checkpoint path at {run}/checkpoints/last.ckpt" in logs, logs[-3000:]
    assert logs.count("Initializing distributed") == 2  # the first start and the rerun
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (ckpt["global_step"], ckpt["epoch"]) == (epochs * 12, epochs - 1)

    # one results.json, one W&B run (rank zero of node zero): an offline log per start, all with one id
    assert json.loads((run / "results.json").read_text())["epochs_trained"] == epochs
    assert len(list(sweep.rglob("results.json"))) == 1
    run_id = (run / "wandb_id.txt").read_text().strip()
    files = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files), files
    assert run_info(read_records(files[-1])).run_id == run_id
    assert len(list(sweep.rglob("offline-run-*"))) == 2


@pytest.mark.slurm
@pytest.mark.cluster
def test_an_unresolvable_master_address_fails_at_once_with_one_line(two_nodes: None, tmp_path: Path) -> None:
    """MASTER_ADDR reaches the job's tasks through sbatch's environment; no node can resolve it."""
    sweep = tmp_path / "sweep"
    start = time.time()
    cmd = [*TWO_NODES, "trainer.max_epochs=1", "logger=none", "seed=1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(
        cmd, cwd=REPO, env=cli_env(MASTER_ADDR="no-such-node.invalid"), capture_output=True, text=True, timeout=300
    )
    elapsed = time.time() - start
    assert_user_error(proc, "DDP rendezvous no-such-node.invalid:", "does not resolve", "MASTER_ADDR")
    (job,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    # both ranks stopped at the rendezvous check (each task's log says so), before torch's store was tried
    for task in (0, 1):
        logs = _task_logs(sweep, job, task)
        assert f"advnets: error: rank {task}: DDP rendezvous no-such-node.invalid" in logs, logs[-3000:]
        assert "Initializing distributed" not in logs
    assert elapsed < 240, elapsed  # process start-ups on a loaded 2-core machine; the check itself is instant


@pytest.mark.slurm
@pytest.mark.cluster
@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (  # trainer.devices swept: SLURM would be asked for the base config's one task per node
            ["trainer.num_nodes=2", "trainer.devices=1,2"],
            ["hydra.launcher.tasks_per_node=2 with trainer.devices=1", "tasks_per_node = trainer.devices"],
        ),
        (
            ["trainer.num_nodes=3", "trainer.devices=1"],
            ["trainer.num_nodes=3; allowed: at most 2, the nodes of partition pair"],
        ),
    ],
    ids=["devices-swept", "more-nodes-than-the-partition"],
)
def test_a_request_that_cannot_run_stops_before_submission(
    two_nodes: None, tmp_path: Path, overrides: list[str], fragments: list[str]
) -> None:
    cmd = [*SLURM_DDP, "trainer.max_epochs=1", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert_user_error(proc, *fragments)
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no submitit folder: nothing was submitted
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert set(after.split()) <= set(before.split())  # no new job (another module's jobs may end meanwhile)


# --- the checks themselves, without a cluster ------------------------------------------------------------


def _request(**kw: object) -> slurm_request.Request:
    base = {"nodes": 2, "tasks_per_node": 1, "cpus_per_task": 1, "gpus_per_node": 0, "partition": None}
    return slurm_request.Request(**{**base, **kw})  # type: ignore[arg-type]


def test_the_partition_must_have_the_nodes_cpus_and_gpus_asked_for() -> None:
    cpu_nodes = [slurm_request.Node("a", 4, 0), slurm_request.Node("b", 2, 0)]
    slurm_request.check_partition(_request(), "p", cpu_nodes)
    slurm_request.check_partition(_request(nodes=1, tasks_per_node=2, cpus_per_task=2), "p", cpu_nodes)
    with pytest.raises(UserError, match=r"trainer.num_nodes=3; allowed: at most 2, the nodes of partition p"):
        slurm_request.check_partition(_request(nodes=3), "p", cpu_nodes)
    with pytest.raises(UserError, match=r"= 8 CPUs per node; allowed: at most 4"):
        slurm_request.check_partition(_request(nodes=1, tasks_per_node=2, cpus_per_task=4), "p", cpu_nodes)
    with pytest.raises(UserError, match=r"trainer.num_nodes=2 nodes of 4 CPUs .* allowed: at most 1"):
        slurm_request.check_partition(_request(tasks_per_node=2, cpus_per_task=2), "p", cpu_nodes)
    gpu_nodes = [
        slurm_request.Node("g1", 32, slurm_request._gpus("gpu:a100:4(S:0-1)")),
        slurm_request.Node("g2", 32, 4),
    ]
    slurm_request.check_partition(_request(tasks_per_node=4, gpus_per_node=4), "g", gpu_nodes)
    with pytest.raises(UserError, match=r"trainer.devices=8 GPUs per node; allowed: at most 4"):
        slurm_request.check_partition(_request(tasks_per_node=8, gpus_per_node=8), "g", gpu_nodes)
    # GPUs asked of a partition without any: sbatch refuses, in its own words (and advnets.errors adds the hint)
    slurm_request.check_partition(_request(nodes=1, gpus_per_node=1, cpus_per_task=64), "p", cpu_nodes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ranks_meet_and_rank_zero_keeps_the_store_open_for_the_process_group() -> None:
    port = _free_port()
    errors: list[BaseException] = []

    def rank_one() -> None:
        try:
            meet(Rendezvous("localhost", port, 1, 2), within=20)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)

    thread = threading.Thread(target=rank_one)
    thread.start()
    time.sleep(0.5)  # rank one arrives first and waits for rank zero's store
    meet(Rendezvous("localhost", port, 0, 2), within=20)
    thread.join(20)
    assert not thread.is_alive() and errors == []
    # the process group's own store shares rank zero's server (the port stays open in between)
    from torch.distributed import TCPStore

    master = TCPStore("localhost", port, 2, True, timedelta(seconds=5), multi_tenant=True, wait_for_workers=False)
    client = TCPStore("localhost", port, 2, False, timedelta(seconds=5), wait_for_workers=False)
    master.set("k", "v")
    assert client.get("k") == b"v"
    rendezvous._open_store.clear()


def test_a_rendezvous_that_cannot_happen_is_one_line_within_the_timeout() -> None:
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"DDP rendezvous 127.0.0.1:{port} .*: rank 1 could not connect for 2 s"):
        meet(Rendezvous("127.0.0.1", port, 1, 2), within=2)  # a closed port
    with pytest.raises(UserError, match=rf"DDP rendezvous 127.0.0.1:{port} .*: rank 0 waited 2 s and 1 of 2 ranks"):
        meet(Rendezvous("127.0.0.1", port, 0, 2), within=2)  # nobody comes
    assert time.monotonic() - start < 15
    with pytest.raises(UserError, match=r"no-such-node.invalid does not resolve on this node"):
        meet(Rendezvous("no-such-node.invalid", port, 1, 2), within=2)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        with pytest.raises(UserError, match=rf"port {port} is in use on this node"):
            meet(Rendezvous("127.0.0.1", port, 0, 2), within=2)


def test_the_rendezvous_is_the_one_lightning_picks_on_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert rendezvous.slurm_rendezvous() is None  # one task: nothing to meet
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_JOB_NAME", "advnets-x")
    monkeypatch.setenv("SLURM_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    assert rendezvous.slurm_rendezvous() == Rendezvous("gpu07", 15000 + 3456, 3, 4)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert rendezvous.slurm_rendezvous() == Rendezvous("10.0.0.7", 29500, 3, 4)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # Lightning's own opt-out of its SLURM environment
    assert rendezvous.slurm_rendezvous() is None
    monkeypatch.setenv(rendezvous.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match=r"ADVNETS_RENDEZVOUS_TIMEOUT_S=soon; allowed: a number of seconds > 0"):
        rendezvous.timeout_s()
