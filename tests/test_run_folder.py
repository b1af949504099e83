"""Run folders: a multirun job started again in its folder (as SLURM requeues it) keeps every start's record."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from conftest import QUICK, run_advnets


def test_a_rerun_multirun_job_keeps_the_record_of_every_start(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["train", "-m", *QUICK, "logger=none", "evaluate=false", "seed=3", f"hydra.sweep.dir={sweep}"]
    first = run_advnets(*command, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    # the same sweep asked for one more epoch: the job resumes in its folder (an unchanged one is finished)
    second = run_advnets(*command, "trainer.max_epochs=2", "allow_config_change=true")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "advnets: resuming from" in second.stdout
    starts = sorted((sweep / "0" / ".hydra" / "history").iterdir())
    assert len(starts) == 2
    for start in starts:
        assert OmegaConf.load(start / "config.yaml").seed == 3
        assert "seed=3" in OmegaConf.load(start / "overrides.yaml")
