"""advnets-eval: the paper protocol on a checkpoint; results.json, samples.npz that re-derive the number."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from advnets.data import load_digits
from advnets.metrics.parzen import parzen_protocol

from conftest import run_advnets, run_refused
from wandb_log import config, history, offline_run_file, read_records, run_info


@pytest.fixture
def trained(quick_run: Path) -> Path:
    """A finished quickstart run (conftest's ``quick_run``: 2 epochs, one best checkpoint), only read here."""
    return quick_run


def _eval(ckpt: Path, out: Path, *extra: str, logger: str = "none", bare: bool = False) -> dict:
    """advnets-eval on ``ckpt`` (given as ``ckpt_path=CKPT``, or ``bare``: as the path alone)."""
    given = str(ckpt) if bare else f"ckpt_path={ckpt}"
    proc = run_advnets("evaluate", given, "eval.n_samples=400", f"hydra.run.dir={out}", f"logger={logger}", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "results.json").read_text())


def test_eval_uses_the_threads_it_is_given_and_says_what_it_wrote(trained: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()  # this worker's own count, restored: the command runs in this process
    wanted = 3 if before != 3 else 2
    out = tmp_path / "e"
    try:
        proc = run_advnets("evaluate", str(trained), f"threads={wanted}", f"hydra.run.dir={out}", "logger=none")
    finally:
        torch.set_num_threads(before)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["hardware"].endswith(f", {wanted} threads"), results["hardware"]
    # its closing lines call it an evaluation and name every file it wrote
    assert f"advnets: evaluation {out}" in proc.stdout and "samples.npz" in proc.stdout, proc.stdout[-2000:]


def test_eval_writes_results_samples_and_pictures(trained: Path, tmp_path: Path) -> None:
    results = _eval(trained / "checkpoints" / "best.ckpt", tmp_path / "e1", logger="wandb")
    for key in ("parzen_ll", "parzen_se", "sigma", "n_samples", "n_valid", "n_test", "dataset", "seed", "checkpoint"):
        assert key in results, key
    curve = (trained / "val_curve.csv").read_text().splitlines()[1:]
    best_epoch = max(curve, key=lambda line: float(line.split(",")[2])).split(",")[0]
    assert results["epoch"] == int(best_epoch) and results["advnets_version"]  # the best by validation Parzen
    assert (results["n_samples"], results["n_valid"], results["n_test"], results["dataset"]) == (
        400,
        300,
        297,
        "digits",
    )
    assert results["sigma"] in results["grid"]
    assert results["mean_ll_per_sigma"][results["grid"].index(results["sigma"])] == max(results["mean_ll_per_sigma"])
    for picture in ("samples_grid.png", "nearest.png", "interpolation.png"):
        assert (tmp_path / "e1" / picture).read_bytes()[:4] == b"\x89PNG"
    # beyond Parzen: every metric of eval.metrics for the samples and for real vs real, with its protocol
    assert list(results["metrics"]) == list(results["metrics_reference"]) == results["eval"]["metrics"]
    assert results["metrics_reference"]["fid"] < results["metrics"]["fid"]
    assert (
        results["metrics_protocol"]["classifier"]["dataset"] == "digits"
        and results["metrics_protocol"]["n_fake"] == 400
        and results["metrics_protocol"]["n_floor"] == 400  # the floor: as many training images as samples
    )
    # one offline W&B run of this job (job_type eval): the same numbers, the config, the pictures
    records = read_records(offline_run_file(tmp_path / "e1"))
    assert run_info(records).job_type == "eval" and config(records)["ckpt_path"].endswith("best.ckpt")
    logged = {k: v for row in history(records) for k, v in row.items()}
    assert logged["test/parzen_ll"] == pytest.approx(results["parzen_ll"], abs=1e-9)
    for name, value in results["metrics"].items():
        assert logged[f"test/{name}"] == pytest.approx(value, abs=1e-9), name
    assert logged["test_real_vs_real/fid"] == pytest.approx(results["metrics_reference"]["fid"], abs=1e-9)
    # at the checkpoint's last update, the unit of training's log (12 updates an epoch; joint: 24 optimizer steps)
    assert results["updates"] == 12 * results["epoch"] and logged["trainer/global_step"] == results["updates"] - 1
    for picture in ("samples", "interpolation"):
        assert logged[f"test/{picture}/_type"] == "images/separated"
        assert list((tmp_path / "e1").glob(f"wandb/offline-run-*/files/media/images/test/{picture}_*.png"))


def test_saved_samples_re_derive_the_number_independently(trained: Path, tmp_path: Path) -> None:
    results = _eval(trained / "checkpoints" / "best.ckpt", tmp_path / "e2")
    samples = torch.from_numpy(np.load(tmp_path / "e2" / "samples.npz")["samples"])
    splits = load_digits(1200, 300)
    again = parzen_protocol(samples, splits.valid, splits.test)
    assert again.log_likelihood == pytest.approx(results["parzen_ll"], abs=1e-9)
    assert again.sigma == results["sigma"]
    # brute force at the chosen sigma, float64, explicit differences
    d2 = (splits.test.double()[:, None, :] - samples.double()[None]).pow(2).sum(-1)
    s = results["sigma"]
    ll = torch.logsumexp(-d2 / (2 * s * s), 1) - np.log(len(samples)) - 64 * np.log(s * np.sqrt(2 * np.pi))
    assert float(ll.mean()) == pytest.approx(results["parzen_ll"], abs=1e-6)


def test_same_seed_same_number_other_seed_other_number(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "best.ckpt"
    a, b = _eval(ckpt, tmp_path / "a"), _eval(trained, tmp_path / "b", bare=True)  # b: the run folder alone
    c = _eval(ckpt, tmp_path / "c", "seed=5")
    assert a["parzen_ll"] == b["parzen_ll"] and c["parzen_ll"] != a["parzen_ll"] and c["seed"] == 5
    assert b["checkpoint"] == str(ckpt) and b["epoch"] == a["epoch"]


def test_exported_generator_alone_re_derives_the_number(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "best.ckpt"
    export = tmp_path / "export"
    first = _eval(ckpt, tmp_path / "x", f"export_to={export}")
    assert sorted(p.name for p in export.iterdir()) == ["config.yaml", "generator.pt"]
    state = torch.load(export / "generator.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    again = _eval(export / "generator.pt", tmp_path / "y")
    assert again["parzen_ll"] == first["parzen_ll"] and "epoch" not in again  # no record beside it says the epoch
    shutil.copy(tmp_path / "x" / "results.json", export / "results.json")  # a record: the results beside it
    generator, out = export / "generator.pt", tmp_path / "r"
    proc = run_advnets("evaluate", str(generator), "eval.n_samples=400", "logger=none", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = f"advnets: evaluating {generator}, epoch {first['epoch']} as {export / 'results.json'}"
    assert f"{said} records" in proc.stdout.splitlines()
    assert f"(epoch {first['epoch']}, 400 samples" in proc.stdout
    recorded = json.loads((out / "results.json").read_text())
    assert (recorded["epoch"], recorded["updates"]) == (first["epoch"], first["updates"])
    proc = run_advnets(
        "evaluate", f"ckpt_path={ckpt}", f"export_to={export}", "logger=none", f"hydra.run.dir={tmp_path / 'z'}"
    )
    assert proc.returncode == 2 and "exists" in proc.stderr  # never overwrites


def test_fixed_sigma_skips_selection(trained: Path, tmp_path: Path) -> None:
    results = _eval(trained / "checkpoints" / "best.ckpt", tmp_path / "f", "eval.sigma=0.3")
    assert results["sigma"] == 0.3 and results["n_valid"] == 0


def test_figure3_rows_are_straight_lines_between_seeded_pairs_of_z(trained: Path, tmp_path: Path) -> None:
    from PIL import Image

    from advnets.pictures import MIN_LABELLED_CELL, interpolation_z, scale_for

    a, b = torch.randn(3, 5), torch.randn(3, 5)
    z = interpolation_z(a, b, 4).view(3, 4, 5)
    torch.testing.assert_close(z[:, 0], a)
    torch.testing.assert_close(z[:, -1], b)
    torch.testing.assert_close(z[:, 1], a + (b - a) / 3)
    figure = ["eval.interpolation_rows=3", "eval.interpolation_steps=7"]
    _eval(trained / "checkpoints" / "best.ckpt", tmp_path / "e", *figure)
    k = scale_for(7, 8, MIN_LABELLED_CELL)  # 8x8 digits enlarged k times
    with Image.open(tmp_path / "e" / "interpolation.png") as picture:
        width, height = picture.size
    assert width == 7 * (8 * k + 2) + 2  # 7 steps, 2-px padding
    assert height > 3 * (8 * k + 2) + 2  # 3 rows, under the z_a -> z_b band


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_eval_on_a_missing_device_is_refused_by_name(trained: Path, tmp_path: Path) -> None:
    from conftest import assert_user_error

    proc = run_refused(
        "evaluate",
        f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        "device=cuda",
        f"hydra.run.dir={tmp_path / 'e'}",
    )
    assert_user_error(proc, "device='cuda'", "no CUDA device", "allowed")
    assert not (tmp_path / "e" / "results.json").exists()


def test_a_cuda_index_beyond_the_machines_devices_is_refused_by_name(monkeypatch) -> None:
    """device=cuda:3 on a one-GPU machine: one line naming it and what exists, not a CUDA traceback later."""
    from advnets.errors import UserError
    from advnets.evaluation import eval_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"device='cuda:3' but this machine has 1 CUDA device\(s\); allowed: .*cuda:0$"):
        eval_device("cuda:3")
    assert eval_device("cuda:0") == torch.device("cuda:0") and eval_device("cuda") == torch.device("cuda")


def test_an_exported_config_leaves_data_dir_unresolved(tmp_path: Path, monkeypatch) -> None:
    from omegaconf import OmegaConf

    from advnets.jobs.generator import export_generator
    from advnets.nets import Generator

    from conftest import compose_cfg

    monkeypatch.setenv("ADVNETS_DATA_DIR", "/this/machine/data")
    cfg = compose_cfg(["experiment=quickstart"], tmp_path / "run")
    export_generator(Generator(4, [8], 64, 0.05), cfg, tmp_path / "out")
    exported = OmegaConf.load(tmp_path / "out" / "config.yaml")
    assert OmegaConf.to_container(exported.paths, resolve=False)["data_dir"] == "${oc.env:ADVNETS_DATA_DIR,data}"
    monkeypatch.setenv("ADVNETS_DATA_DIR", "/the/evaluating/machine")
    assert exported.paths.data_dir == "/the/evaluating/machine"


@pytest.mark.parametrize("overrides", [["experiment=quickstart"], ["eval.sigma=1", "eval.metrics=[fid]", "seed=3"]])
def test_the_typed_settings_record_the_eval_config_as_given(overrides: list[str]) -> None:
    """results.json's ``eval`` is what the config gave: the same keys, order, values and types."""
    import json

    from omegaconf import OmegaConf

    from advnets.training import eval_settings

    from conftest import compose_cfg

    cfg = compose_cfg(overrides)
    settings = eval_settings(cfg)
    given = OmegaConf.to_container(cfg.eval, resolve=True)
    assert json.dumps(settings.record()) == json.dumps(given)
    assert settings.suite_settings().seed == given["seed"] and settings.suite_settings().pr_k == given["suite"]["pr_k"]


def test_unknown_or_missing_eval_settings_are_one_line() -> None:
    from advnets.errors import UserError
    from advnets.evaluation import EvalSettings

    base = {"n_samples": 10, "n_valid": 5, "grid": [0.1], "sigma": None, "seed": 0, "precision": "float64"}
    assert EvalSettings.from_dict(base).interpolation_rows == 0 and EvalSettings.from_dict(base).metrics == ()
    with pytest.raises(UserError, match="eval.colour: not an evaluation setting; known: n_samples"):
        EvalSettings.from_dict({**base, "colour": 1})
    with pytest.raises(UserError, match="eval.suite.k: not a suite setting; known: pr_k"):
        EvalSettings.from_dict({**base, "suite": {"k": 1}})
    with pytest.raises(UserError, match="eval.precision is missing"):
        EvalSettings.from_dict({k: v for k, v in base.items() if k != "precision"})


def test_nothing_below_the_drivers_takes_a_config() -> None:
    """Only the drivers (cli/, training.py), the run folder (run_folder.py), the schema, Hydra's jobs (jobs/) and
    the sweeps (search/) read a DictConfig; everything below them takes typed arguments (EvalSettings,
    SuiteSettings)."""
    from conftest import REPO

    package = REPO / "src" / "advnets"
    drivers = {"cli", "jobs", "search"}
    readers = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).parts[0] not in drivers
        and path.name not in ("training.py", "schema.py", "run_folder.py")
        and "DictConfig" in path.read_text()
    ]
    assert readers == []


@pytest.mark.parametrize("path", ["runs/a", "my runs/a,b", "it's/(here)", "/abs/x.ckpt"])
def test_a_bare_path_is_the_checkpoint_as_hydra_reads_it(path: str) -> None:
    """``advnets-eval PATH`` is ``ckpt_path=PATH``: Hydra's own override parser reads the path back unchanged,
    whatever characters it holds; options and their values stay as they were."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from advnets.jobs.eval_inputs import bare_path_as_ckpt_path

    argv = bare_path_as_ckpt_path(["--config-dir", "conf", path, "eval.n_samples=5", "-m"])
    assert argv[:2] == ["--config-dir", "conf"] and argv[3:] == ["eval.n_samples=5", "-m"]
    override = OverridesParser.create().parse_override(argv[2])
    assert (override.key_or_group, override.value()) == ("ckpt_path", path)
