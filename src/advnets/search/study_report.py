"""A study people can read: ``trials.csv`` and ``trials.md`` (number, state, parameters, objective, epochs
trained, run folder) and Optuna's own plots (optimization history, parallel coordinates, parameter importances),
written into a sweep folder."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

from advnets.logs import get_logger
from advnets.search.pruning import EPOCHS_ATTR, PRUNED_ATTR

log = get_logger(__name__)

RUN_FOLDER_ATTR = "run_folder"  # the trial's user attribute the sweeper sets: its job's run folder
PLOTS = {
    "optuna_history.png": "plot_optimization_history",
    "optuna_parallel_coordinate.png": "plot_parallel_coordinate",
    "optuna_param_importances.png": "plot_param_importances",
}


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, each parameter, the objective, epochs trained, pruned at, run folder."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update({name: t.params.get(name, "") for name in names})
        row["objective"] = "" if t.values is None else ",".join(f"{v:.6g}" for v in t.values)
        row["epochs"] = t.user_attrs.get(EPOCHS_ATTR, "")
        row["pruned_at_epoch"] = t.user_attrs.get(PRUNED_ATTR, "")
        row["run_folder"] = t.user_attrs.get(RUN_FOLDER_ATTR, "")
        rows.append(row)
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study; a plot the study cannot make yet (too few trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials": such a plot is drawn empty
    made = []
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna.visualization.matplotlib is "experimental"
                axes = getattr(plots, function)(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(folder / name, dpi=100, bbox_inches="tight")
            plt.close(figure)
            made.append(folder / name)
        except Exception as err:  # e.g. importances need two finished trials
            log.debug("%s not drawn: %s", name, err)
    return made


def write_study_report(study: Any, folder: Path) -> list[Path]:
    """``trials.csv``, ``trials.md`` and the plots in ``folder``; returns the files written."""
    rows = trial_rows(study)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "trials.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "trials.md").write_text(f"# Study {study.study_name}\n\n" + _markdown(rows))
    return [table, folder / "trials.md", *_plots(study, folder)]
