"""advnets installs like any package: the wheel holds the configs, and a non-editable install trains the
quickstart from a folder that has nothing of the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import REPO


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_the_wheel_installs_non_editable_and_trains_the_quickstart_anywhere(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: the checkout's own build/ and egg-info are not involved
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        source,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("advnets-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"advnets/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert configs <= shipped and "advnets/metrics/classifiers/digits.pt" in shipped
    # every module of the checkout ships (pyproject.toml lists the packages by hand, for the conf/ mapping)
    modules = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src").rglob("*.py") if "egg-info" not in str(p)}
    assert modules <= shipped, sorted(modules - shipped)
    assert "hydra_plugins/advnets_optuna_sweeper/sweeper.py" in shipped  # hydra/sweeper=optuna

    # a fresh environment that borrows this one's dependencies (torch, Lightning, ...) but not its advnets
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index"]
    _run(*install, wheel, cwd=tmp_path)  # this environment's own advnets (outside the new one) is left alone

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ADVNETS_CONF_DIR", "ADVNETS_OUTPUT_DIR")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    where = _run(python, "-c", "import advnets; print(advnets.__file__, advnets.CONF_DIR)", cwd=elsewhere, env=env)
    module, conf = where.stdout.split()
    assert module.startswith(str(purelib)) and conf == str(purelib / "advnets" / "conf")
    train = env_dir / "bin" / "advnets-train"
    # --config-dir adds one's own groups and options (the example package's) in front of the packaged ones
    user_conf = REPO / "examples" / "dcgan_digits" / "dcgan_digits" / "conf"
    helped = _run(train, "--help", "--config-dir", user_conf, cwd=elsewhere, env=env).stdout
    assert "debug: fast, limit, overfit, profiler" in helped
    (models,) = [line for line in helped.splitlines() if line.startswith("model: ")]
    assert {"dcgan_digits", "small", "paper_mnist"} <= set(models.removeprefix("model: ").split(", "))
    # ADVNETS_CONF_DIR: a whole config folder of one's own in place of the package's
    own = tmp_path / "own-conf"
    shutil.copytree(conf, own)
    quickstart = own / "experiment" / "quickstart.yaml"
    quickstart.write_text(quickstart.read_text().replace("max_epochs: 150", "max_epochs: 7"))
    job = _run(train, "--cfg", "job", cwd=elsewhere, env={**env, "ADVNETS_CONF_DIR": str(own)}).stdout
    assert "max_epochs: 7" in job and "name: digits" in job

    _run(train, "debug=fast", "threads=1", cwd=elsewhere, env=env)  # one epoch of 3 batches, no logger
    (run,) = (elsewhere / "outputs" / "quickstart").iterdir()  # the default experiment, below ./outputs
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "digits" and results["epochs_trained"] == 1
    assert results["source_commit"] is None and results["command"] == "advnets-train debug=fast threads=1"
    assert "class_kl" in results["metrics"]  # the suite's digits classifier, found in the installed package
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "nearest.png").is_file()
