"""What pruning saves: the same seeded Optuna search on the quickstart run twice, without a pruner and with a
median pruner, in one invocation; printed: total epochs trained and the best validation Parzen LL found by each,
and their ratios (pruned / unpruned).

Target: pruning trains clearly fewer epochs (ratio < 0.8) for a best score within a few nats of the unpruned one.

    python benchmarks/sweep_pruning.py [--trials 16] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MEDIAN = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:4,n_warmup_steps:2}"


def search(folder: Path, name: str, trials: int, epochs: int, *extra: str) -> tuple[int, float]:
    """Run one search; (epochs trained over all trials, best validation Parzen LL of any trial)."""
    import optuna

    command = [
        sys.executable,
        "-m",
        "advnets.cli.train",
        "-m",
        "hparams_search=optuna",
        "experiment=quickstart",
        "threads=1",
        "logger=none",
        "evaluate=false",
        "callbacks.sample_grid.every_n_epochs=0",
        "callbacks.progress_bar=null",
        "callbacks.parzen_monitor.every_n_epochs=1",
        "+trainer.limit_train_batches=12",
        f"trainer.max_epochs={epochs}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.study_name={name}",
        f"paths.log_dir={folder}",
        f"hydra.sweep.dir={folder / name}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    env.setdefault("WANDB_MODE", "offline")
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    trained = sum(int(t.user_attrs.get("epochs_trained", 0)) for t in done)
    best = max(max(t.intermediate_values.values()) for t in done if t.intermediate_values)
    return trained, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="advnets-pruning-") as tmp:
        folder = Path(tmp)
        plain = search(folder, "unpruned", args.trials, args.epochs)
        pruned = search(folder, "pruned", args.trials, args.epochs, MEDIAN)
    print(f"{args.trials} trials of at most {args.epochs} epochs, the same seeded TPE search, this machine:")
    print(f"  unpruned: {plain[0]} epochs trained, best validation Parzen LL {plain[1]:.3f}")
    print(f"  pruned:   {pruned[0]} epochs trained, best validation Parzen LL {pruned[1]:.3f}")
    print(f"  ratio (pruned / unpruned): epochs {pruned[0] / plain[0]:.2f}, best score {pruned[1] / plain[1]:.3f}")
    print(f"  best score, pruned minus unpruned: {pruned[1] - plain[1]:+.3f} nats (higher is better)")


if __name__ == "__main__":
    main()
