"""``python -m advnets.publish RUN DEST``: the small, committable record of a finished run.

Copies ``results.json`` (paths made relative), ``val_curve.csv`` and the pictures, exports the generator alone
(a plain ``state_dict``) with the run's config, and records a reduced-size re-evaluation (``check.json``) that
``advnets-eval`` on the committed weights must reproduce. No checkpoints, no sample arrays.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from advnets.evaluate import build_generator, evaluate_run, export_generator, load_generator_weights

CHECK = {"n_samples": 1000, "seed": 0}
"""The re-evaluation CI repeats on the committed generator: small enough to take seconds."""


def publish(run_dir: Path, dest: Path, label: str | None = None) -> Path:
    """Write DEST/{results.json, val_curve.csv, samples_grid.png, nearest.png, generator.pt, config.yaml,
    check.json} from a finished run folder."""
    results = json.loads((run_dir / "results.json").read_text())
    ckpt = Path(results["checkpoint"])
    run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    state, _ = load_generator_weights(ckpt)
    datamodule = instantiate(run_cfg.dataset)
    generator = build_generator(run_cfg.model, state, datamodule.data_dim)
    dest.mkdir(parents=True, exist_ok=True)
    export_generator(generator, run_cfg, dest)
    results["checkpoint"] = f"{run_dir.name}/checkpoints/{ckpt.name}"
    results["run_dir"] = run_dir.name
    if label:
        results["label"] = label
    (dest / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name in ("val_curve.csv", "samples_grid.png", "nearest.png"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    eval_cfg = OmegaConf.create({**OmegaConf.to_container(run_cfg.eval), **CHECK, "sigma": results["sigma"]})
    scratch = dest / ".check"
    check = evaluate_run(generator, datamodule, run_cfg.game.noise, eval_cfg, scratch, {}, torch.device("cpu"))
    shutil.rmtree(scratch)
    summary = {**CHECK, "sigma": results["sigma"], "parzen_ll": check["parzen_ll"], "parzen_se": check["parzen_se"]}
    (dest / "check.json").write_text(json.dumps(summary, indent=2) + "\n")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m advnets.publish", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--label", help="the row name in the report (default: the experiment and overrides)")
    args = parser.parse_args()
    print(publish(args.run_dir, args.dest, args.label))


if __name__ == "__main__":
    main()
