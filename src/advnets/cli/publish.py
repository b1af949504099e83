"""``python -m advnets.cli.publish RUN DEST``: the small, committable record of a finished run.

Copies ``results.json`` (paths made relative), ``val_curve.csv`` and the pictures, exports the generator alone
(a plain ``state_dict``) with the run's config (read as data: it may name only the targets of advnets' own configs
and of ``--config-dir DIR``, see advnets.jobs.trusted), and records a reduced-size re-evaluation (``check.json``) that
``advnets-eval`` on the committed weights must reproduce. No checkpoints, no sample arrays.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from advnets.errors import UserError, fail
from advnets.evaluation import EvalSettings, evaluate_run
from advnets.jobs.generator import build_generator, export_generator, load_generator_weights
from advnets.jobs.trusted import load_foreign_config, user_config_folders
from advnets.logs import get_logger, output
from advnets.store import atomic
from advnets.store.provenance import command_line

log = get_logger(__name__)

CHECK = {"n_samples": 1000, "seed": 0}
"""The re-evaluation CI repeats on the committed generator: small enough to take seconds."""


def publish(
    run_dir: Path,
    dest: Path,
    label: str | None = None,
    with_generator: bool = True,
    results_path: Path | None = None,
    commit: str | None = None,
    config_dirs: list[Path] | None = None,
) -> Path:
    """Write DEST/{results.json, val_curve.csv, samples_grid.png, nearest.png, .hydra/} from a run folder, and with
    ``with_generator`` also generator.pt, config.yaml and check.json.

    ``results_path``: an ``advnets-eval`` result for this run's checkpoint (e.g. of a run still training or
    stopped when compute ran out); its pictures are taken from beside it. ``commit``: the source commit the run
    was trained from, for a run whose results.json does not record it. ``config_dirs``: the user's own config
    folders, whose targets the run's config may name beside advnets' own."""
    results_path = results_path or run_dir / "results.json"
    results = json.loads(results_path.read_text())
    ckpt = _reported_checkpoint(results, run_dir)
    _fill_run_facts(results, run_dir, ckpt)
    if commit:
        results["source_commit"] = commit
    results["command"] = command_line("advnets-train", results["overrides"])
    if with_generator:  # checked before anything is written
        folders = [*user_config_folders(), *(config_dirs or [])]
        run_cfg = load_foreign_config(run_dir / ".hydra" / "config.yaml", folders)
    dest.mkdir(parents=True, exist_ok=True)
    if with_generator:
        _publish_generator(run_cfg, ckpt, dest, results["sigma"])
    results["checkpoint"] = f"{run_dir.name}/checkpoints/{ckpt.name}"
    results["run_dir"] = run_dir.name
    if label:
        results["label"] = label
    atomic.write_json(dest / "results.json", results)
    atomic.copy_file(run_dir / "val_curve.csv", dest / "val_curve.csv")
    (dest / ".hydra").mkdir(exist_ok=True)  # the composed config: advnets-compare reads DEST as a run folder
    for name in ("config.yaml", "overrides.yaml"):
        atomic.copy_file(run_dir / ".hydra" / name, dest / ".hydra" / name)
    for name in ("samples_grid.png", "nearest.png"):
        atomic.copy_file(results_path.parent / name, dest / name)
    return dest


def _reported_checkpoint(results: dict, run_dir: Path) -> Path:
    """The checkpoint the results were computed on. A run stopped before its first monitored epoch (``max_time``)
    wrote no best checkpoint and evaluated its last weights: those of ``last.ckpt``, written at its last epoch."""
    if results.get("checkpoint"):
        return Path(results["checkpoint"])
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(f"{run_dir} recorded no best checkpoint and has no {last}; there are no weights to publish")
    log.warning("%s recorded no best checkpoint (none was written): publishing its last weights, %s", run_dir, last)
    return last


def _fill_run_facts(results: dict, run_dir: Path, ckpt: Path) -> None:
    """What an ``advnets-eval`` result lacks and the run folder knows: experiment, overrides, train time."""
    hydra_dir = run_dir / ".hydra"
    if "experiment" not in results:  # read as data: nothing in the folder's files is resolved or built
        hydra = yaml.safe_load((hydra_dir / "hydra.yaml").read_text()) or {}
        results["experiment"] = hydra.get("hydra", {}).get("runtime", {}).get("choices", {}).get("experiment")
    results.setdefault("overrides", list(yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []))
    if "train_seconds" not in results:  # wall time from the run's start to the reported checkpoint
        results["train_seconds"] = round(ckpt.stat().st_mtime - (hydra_dir / "config.yaml").stat().st_mtime, 1)


def _publish_generator(run_cfg: DictConfig, ckpt: Path, dest: Path, sigma: float) -> None:
    """generator.pt + config.yaml, and check.json: a reduced re-evaluation at the reported sigma."""
    state, _ = load_generator_weights(ckpt)
    datamodule = instantiate(run_cfg.dataset)
    generator = build_generator(run_cfg.model, state, datamodule.data_dim)
    export_generator(generator, run_cfg, dest)
    recorded = EvalSettings.from_dict(OmegaConf.to_container(run_cfg.eval, resolve=True))  # type: ignore[arg-type]
    settings = dataclasses.replace(recorded, **CHECK, sigma=sigma)
    scratch = dest / ".check"
    check = evaluate_run(generator, datamodule, run_cfg.game.noise, settings, scratch, {}, torch.device("cpu"))
    shutil.rmtree(scratch)
    summary = {**CHECK, "sigma": sigma, "parzen_ll": check["parzen_ll"], "parzen_se": check["parzen_se"]}
    atomic.write_json(dest / "check.json", summary)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m advnets.cli.publish", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--label", help="the row name in the report (default: the experiment and overrides)")
    parser.add_argument("--no-generator", action="store_true", help="results and pictures only (no weights)")
    parser.add_argument("--results", type=Path, help="an advnets-eval results.json for this run's checkpoint")
    parser.add_argument("--commit", help="the source commit the run was trained from (when its results lack it)")
    parser.add_argument(
        "--config-dir", type=Path, action="append", default=[], help="a config folder of one's own the run used"
    )
    args = parser.parse_args()
    try:
        given = (args.run_dir, args.dest, args.label, not args.no_generator, args.results, args.commit)
        output(publish(*given, args.config_dir))
    except UserError as err:
        fail(str(err))


if __name__ == "__main__":
    main()
