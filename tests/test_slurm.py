"""Sweeps as real SLURM jobs (hydra/launcher=slurm, submitit) on the single-node localhost cluster.

A 2-job sweep runs both jobs as a SLURM job array and their results come back to the sweep. While they train,
job 0 gets USR2 (the signal SLURM sends `signal_delay_s` before a time limit: submitit checkpoints the call
and requeues it) and job 1 is requeued by `scontrol requeue` (as an admin or a preemption would). Both rerun in
their own run folder, resume from its last.ckpt to the same final step, and continue the same W&B run id.

The cluster is started with scripts/slurm-localhost.sh when it is not up. Without SLURM the tests skip, unless
ADVNETS_REQUIRE_SLURM=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from advnets import CONF_DIR
from advnets.store.records import read_curve

from conftest import QUICK, REPO, cli_env, sacct_states
from wandb_log import history, read_records, run_info

SCRIPT = REPO / "scripts" / "slurm-localhost.sh"
EPOCHS = 40
STEPS = EPOCHS * 12 * 2  # 12 batches per epoch, a G and a D step per batch


def _launcher(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", *overrides], return_hydra_config=True)
    keys = ("tasks_per_node", "gpus_per_node", "nodes", "max_num_timeout", "timeout_min", "signal_delay_s")
    out = {k: OmegaConf.select(cfg, f"hydra.launcher.{k}") for k in keys}
    out["plugins"] = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    return out


def test_slurm_launcher_asks_for_one_task_per_device_and_gpus_only_for_gpu_runs() -> None:
    cpu = _launcher("hydra/launcher=slurm", "trainer=cpu")
    assert (cpu["tasks_per_node"], cpu["gpus_per_node"], cpu["nodes"]) == (1, None, 1)
    default = _launcher("hydra/launcher=slurm")  # trainer=auto: SLURM must be asked for the GPU up front
    assert (default["tasks_per_node"], default["gpus_per_node"]) == (1, 1)
    assert cpu["max_num_timeout"] > 0 and cpu["timeout_min"] * 60 > cpu["signal_delay_s"] + 60
    ddp = _launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert (ddp["tasks_per_node"], ddp["gpus_per_node"], ddp["nodes"]) == (4, 4, 2)
    gpu = _launcher("hydra/launcher=slurm", "trainer=gpu")
    assert (gpu["tasks_per_node"], gpu["gpus_per_node"]) == (1, 1)
    ddp_cpu = _launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=cpu")
    assert (ddp_cpu["tasks_per_node"], ddp_cpu["gpus_per_node"]) == (2, None)
    # exactly one owner of requeue: Lightning's SLURM auto-requeue is off, submitit requeues
    (plugin,) = cpu["plugins"]
    assert type(plugin).__name__ == "SLURMEnvironment" and plugin.auto_requeue is False
    local = _launcher("hydra/launcher=local")
    assert (local["tasks_per_node"], local["gpus_per_node"], local["plugins"]) == (1, None, [])


@pytest.fixture(scope="module")
def slurm() -> None:
    """A usable localhost cluster (started if needed), else skip; fail instead when ADVNETS_REQUIRE_SLURM=1."""

    def unavailable(why: str) -> None:
        if os.environ.get("ADVNETS_REQUIRE_SLURM") == "1":
            pytest.fail(f"ADVNETS_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)

    if not (shutil.which("sbatch") and shutil.which("slurmctld") and shutil.which("munged")):
        unavailable("SLURM is not installed (bash scripts/slurm-localhost.sh install)")
    if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode != 0:
        up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=180)
        if up.returncode != 0:
            unavailable(f"the localhost cluster does not start: {(up.stdout + up.stderr)[-800:]}")
    if not shutil.which("sacct"):
        unavailable("no sacct (scripts/slurm-localhost.sh up installs a stand-in)")


def _wait(condition, timeout: float, proc: subprocess.Popen, what: str) -> None:
    end = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {what}")
        if time.time() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _wandb_files(run: Path) -> list[Path]:
    return sorted(run.glob("wandb/offline-run-*/run-*.wandb"))


def _logged(run: Path) -> bool:
    """The run's (first) W&B offline log already holds a history row on disk."""
    files = _wandb_files(run)
    try:
        return bool(files) and bool(history(read_records(files[0])))
    except Exception:  # a record half written right now
        return False


SLURM_SWEEP = [
    sys.executable,
    "-m",
    "advnets.cli.train",
    "-m",
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=10",
    "trainer=cpu",
    *QUICK,
]
"""A quickstart sweep through the SLURM launcher, one CPU per task."""


@pytest.mark.slurm
def test_sweep_runs_as_slurm_jobs_and_requeued_jobs_resume(slurm: None, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [
        *SLURM_SWEEP,
        f"trainer.max_epochs={EPOCHS}",
        "callbacks.parzen_monitor.every_n_epochs=1",
        "callbacks.parzen_monitor.n_samples=300",
        "callbacks.sample_grid.every_n_epochs=20",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    env = cli_env(WANDB__TRANSACTION_LOG_FLUSH_INTERVAL="1")  # W&B writes its log every second here
    log = (tmp_path / "sweep.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    runs = [sweep / "0", sweep / "1"]
    try:
        # both jobs have a checkpoint and have written W&B records: now stop them mid-training
        _wait(
            lambda: all((r / "checkpoints" / "last.ckpt").exists() and _logged(r) for r in runs),
            240,
            proc,
            "both jobs to checkpoint",
        )
        (array,) = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*_0")}
        signal = subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], capture_output=True, text=True)
        assert signal.returncode == 0, signal.stderr
        requeue = subprocess.run(["scontrol", "requeue", f"{array}_1"], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", "--name=advnets-quickstart"], capture_output=True)
    assert rc == 0, (tmp_path / "sweep.log").read_text()[-4000:]

    # the sbatch script: one task per device, no GPU for a CPU run, USR2 before the limit, requeueable
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    for flag in ("--array=0-1", "--ntasks-per-node=1", "--signal=USR2@120", "--requeue", "--time=10"):
        assert f"#SBATCH {flag}" in script, flag
    assert "--gpus-per-node" not in script

    # both ran as SLURM jobs, were restarted once, and completed (SLURM may still be completing them)
    end = time.time() + 60
    states = sacct_states(array)
    while {state for state, _ in states.values()} != {"COMPLETED"} and time.time() < end:
        time.sleep(0.5)
        states = sacct_states(array)
    assert states[f"{array}_0"][0] == states[f"{array}_1"][0] == "COMPLETED", states
    assert states[f"{array}_0"][1] >= 1 and states[f"{array}_1"][1] >= 1, states

    ids = []
    for job, run in enumerate(runs):
        task = f"{array}_{job}"
        out = (sweep / ".submitit" / task / f"{task}_0_log.out").read_text()
        err = (sweep / ".submitit" / task / f"{task}_0_log.err").read_text()
        # the killed attempt left no result behind; the rerun resumed from the run's own checkpoint
        done = [line for line in out.splitlines() if line.startswith("submitit INFO") and "Job completed" in line]
        assert len(done) == 1, out[-3000:]
        # Lightning's messages go where the job's logging goes (Hydra's console: the .out file)
        assert f"Restoring states from the checkpoint path at {run}/checkpoints/last.ckpt" in out + err, out[-3000:]
        if job == 0:
            # submitit, the one owner of requeue, caught the signal (its "Requeued job" line may never be written:
            # SLURM can stop the job between submitit's `scontrol requeue` and that log line)
            assert "Caught signal SIGUSR2" in out + err, err[-3000:]

        # ... to the same final step as an uninterrupted run, with every epoch on the validation curve
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert (ckpt["global_step"], ckpt["epoch"]) == (STEPS, EPOCHS - 1)
        assert [e for e, _ in read_curve(run / "val_curve.csv")] == list(range(1, EPOCHS + 1))
        results = json.loads((run / "results.json").read_text())
        assert results["seed"] == job + 1 and results["epochs_trained"] == EPOCHS

        # the result came back to the sweep: submitit's pickle holds the job's objective
        with (sweep / ".submitit" / task / f"{task}_0_result.pkl").open("rb") as handle:
            kind, job_return = pickle.load(handle)
        metrics = json.loads((run / "metrics.json").read_text())
        assert kind == "success" and job_return.status.name == "COMPLETED"
        assert job_return.return_value == pytest.approx(metrics["objective_score"])  # the best checkpoint's score
        assert metrics["objective_score"] == pytest.approx(
            max(v for _, v in read_curve(run / "val_curve.csv")), abs=1e-3
        )

        # W&B: offline mode writes one offline-run folder per start, all with the run folder's id; the first
        # keeps what was logged before the kill, the second continues from the checkpoint, not from step 0
        files = _wandb_files(run)
        assert len(files) == 2, files
        run_id = (run / "wandb_id.txt").read_text().strip()
        first, second = (read_records(f) for f in files)
        assert run_info(second).run_id == run_id and files[0].name == f"run-{run_id}.wandb"
        before = [row["trainer/global_step"] for row in history(first) if "trainer/global_step" in row]
        after = [row["trainer/global_step"] for row in history(second) if "trainer/global_step" in row]
        assert before and after and min(after) > 0 and max(after) >= max(before)
        assert any("test/parzen_ll" in row for row in history(second))
        ids.append((run_id, run_info(second).run_group))
    assert ids[0][0] != ids[1][0] and ids[0][1] == ids[1][1] == f"train:{sweep.name}"


@pytest.mark.slurm
def test_one_slurm_task_per_device_makes_one_ddp_job(slurm: None, tmp_path: Path) -> None:
    """trainer=ddp with devices=2 on SLURM: two tasks of one job form one DDP world (CPU/gloo here)."""
    sweep = tmp_path / "sweep"
    cmd = [
        *SLURM_SWEEP,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "+callbacks.digest._target_=probes.ParamDigest",
        "seed=1",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "--gpus-per-node" not in script
    ranks = [json.loads((sweep / "0" / f"params_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and ranks[0]["sum"] == ranks[1]["sum"]
    assert ranks[0]["global_step"] == 2 * 6 * 2  # each rank: half of 1200 images, 6 batches per epoch
    assert json.loads((sweep / "0" / "results.json").read_text())["seed"] == 1
    assert len(_wandb_files(sweep / "0")) == 1  # rank zero only


@pytest.mark.slurm
def test_a_gpu_request_on_a_cluster_without_gpus_is_one_line_and_leaves_nothing(slurm: None, tmp_path: Path) -> None:
    """The default trainer (auto) asks SLURM for a GPU per device; this cluster has none: sbatch refuses."""
    cmd = [sys.executable, "-m", "advnets.cli.train", "-m", "hydra/launcher=slurm", *QUICK, "seed=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("advnets: error: ")]
    assert (
        "SLURM refused the job" in line
        and "gres" in line
        and "this cluster offers no GPUs here: pass trainer=cpu" in line
    )
    assert list(tmp_path.iterdir()) == []  # no sweep folder for a sweep that never started


@pytest.mark.slurm
def test_a_job_requeued_after_it_finished_has_nothing_to_do(slurm: None, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [*SLURM_SWEEP, "trainer.max_epochs=2", "logger=none", "seed=1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = sweep / "0"
    results = (run / "results.json").stat().st_mtime_ns
    (task,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    log = sweep / ".submitit" / task / f"{task}_0_log.out"
    requeue = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
    assert requeue.returncode == 0, requeue.stderr
    end = time.time() + 180
    while (
        "nothing to do" not in log.read_text() or sacct_states(task.split("_")[0]).get(task, ("", 0))[0] != "COMPLETED"
    ):
        assert time.time() < end, log.read_text()[-3000:]
        time.sleep(0.5)
    assert f"advnets: run {run} is finished (results.json); nothing to do" in log.read_text()
    assert (run / "results.json").stat().st_mtime_ns == results
    assert sacct_states(task.split("_")[0])[task][1] >= 1  # it really ran again
