"""What pruning saves: the same seeded random search on the quickstart, without a pruner and with successive
halving, for each sampler seed given; printed per seed and in all: epochs trained and the best validation Parzen
LL found, the ratio of epochs (pruned / unpruned) and the difference of best scores in nats (a ratio of
log-likelihoods, which change sign, means nothing).

Both searches draw trial N's parameters from a RandomSampler seeded with the sweeper's seed and N alone (never
from earlier results), and every trial trains with the same training seed: both try the same parameters and
train the same curves, and only pruning differs. A pruned trial's curve is the unpruned one cut short.

The pruner, ``MedianPruner(n_startup_trials=4, n_warmup_steps=10)``, judges a trial at every epoch after its
tenth, once four trials have finished: a trial whose best score so far is below the median of the finished trials'
scores at that epoch stops. Before epoch 8-12 every trial of this search sits on the same plateau (about -7.8 nats,
the samples not yet digits), where a ranking is noise: a pruner that judges there stops the eventual winner
(docs/benchmarks.md). The pruner was chosen by replaying the unpruned curves of seeds 2014-2020 through Optuna's
pruners; the default seeds (2021-2029) are fresh.

Each search runs one trial at a time, so every pruning decision sees the same finished trials and the result does
not depend on timing; a seed's two searches run side by side.

Target: at most half the epochs (ratio <= 0.5) for a best score no worse than the unpruned search's, in every
search.

    python benchmarks/sweep_pruning.py [--trials 16] [--epochs 60] [--seeds 2021 ... 2029] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PRUNER_NAME = "MedianPruner(n_startup_trials=4, n_warmup_steps=10)"
PRUNER = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:4,n_warmup_steps:10}"
SPACE = [  # the search space of hparams_search=optuna
    "optimizer.lr=tag(log,interval(1e-4,1e-1))",
    "game.update=choice(joint,alternating)",
    "game.k=choice(1,2,3)",
]


def search(folder: Path, name: str, trials: int, epochs: int, seed: int, *extra: str) -> dict[int, tuple[int, float]]:
    """Run one search; per trial number: (epochs trained, best validation Parzen LL it reported)."""
    import optuna

    command = [
        sys.executable,
        "-m",
        "advnets.cli.train",
        "-m",
        "experiment=quickstart",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.direction=maximize",
        f"hydra.sweeper.storage=sqlite:///{folder}/{name}.db",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.max_failure_rate=0.5",
        *SPACE,
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
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/{name}.db")
    return {
        t.number: (int(t.user_attrs.get("epochs_trained", 0)), max(t.intermediate_values.values()))
        for t in study.trials
        if t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values
    }


def totals(trials: dict[int, tuple[int, float]]) -> tuple[int, float, int]:
    """(epochs trained by all trials, the best score, the trial that reported it)."""
    number = max(trials, key=lambda n: trials[n][1])
    return sum(epochs for epochs, _ in trials.values()), trials[number][1], number


def compare(folder: Path, trials: int, epochs: int, seed: int) -> tuple[int, int, bool]:
    """One search without and with the pruner (sampler seed ``seed``), printed; (epochs unpruned, epochs pruned,
    whether the pruned search's best is no worse)."""
    with ThreadPoolExecutor(2) as pool:
        plain_run = pool.submit(search, folder, f"unpruned-{seed}", trials, epochs, seed)
        pruned_run = pool.submit(search, folder, f"pruned-{seed}", trials, epochs, seed, PRUNER)
        plain, pruned = plain_run.result(), pruned_run.result()
    (plain_epochs, plain_best, plain_trial), (pruned_epochs, pruned_best, _) = totals(plain), totals(pruned)
    print(f"sampler seed {seed}:", flush=True)
    print(
        f"  unpruned: {plain_epochs} epochs trained, best validation Parzen LL {plain_best:.3f} (trial {plain_trial})"
    )
    print(f"  pruned:   {pruned_epochs} epochs trained, best validation Parzen LL {pruned_best:.3f}")
    print(f"  epochs trained, pruned / unpruned: {pruned_epochs / plain_epochs:.3f}")
    print(f"  best score, pruned minus unpruned: {pruned_best - plain_best:+.3f} nats (higher is better)")
    if plain_trial in pruned:
        print(f"  the unpruned search's best trial trained {pruned[plain_trial][0]} epochs in the pruned search")
    return plain_epochs, pruned_epochs, pruned_best >= plain_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(range(2021, 2030)), help="sampler seeds: one search pair each"
    )
    parser.add_argument("--keep", type=Path, help="a folder to keep the searches in (default: a temporary one)")
    args = parser.parse_args()
    print(f"{args.trials} trials of at most {args.epochs} epochs each, without a pruner and with {PRUNER_NAME}:")
    with tempfile.TemporaryDirectory(prefix="advnets-pruning-") as tmp:
        folder = args.keep.resolve() if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outcomes = [compare(folder, args.trials, args.epochs, seed) for seed in args.seeds]
    plain_epochs, pruned_epochs = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
    kept = sum(o[2] for o in outcomes)
    print(f"all {len(outcomes)} search(es): epochs trained, pruned / unpruned: {pruned_epochs / plain_epochs:.3f}")
    print(f"  the pruned search found a best score no worse in {kept} of {len(outcomes)}")
    met = pruned_epochs <= 0.5 * plain_epochs and kept == len(outcomes)
    print(f"  target (epochs <= 0.5, best score no worse in every search): {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
