"""A study people can read: ``trials.csv`` and ``trials.md`` (number, state, parameters, objective, epochs
trained, run folder) and Optuna's own plots (optimization history, parallel coordinates, parameter importances),
written into a sweep folder at the end of the sweep, and again by ``advnets-compare SWEEP_FOLDER`` from the study
the sweep folder names (``optuna_study.yaml``)."""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from advnets.logs import get_logger
from advnets.metrics.registry import FAILED_SCORE
from advnets.search.trials import EPOCHS_ATTR, PRUNED_ATTR, RUN_FOLDER_ATTR

log = get_logger(__name__)

STUDY_FILE = "optuna_study.yaml"  # in a sweep folder, from its first batch on: the study's name and database
PLOTS = {
    "optuna_history.png": "plot_optimization_history",
    "optuna_parallel_coordinate.png": "plot_parallel_coordinate",
    "optuna_param_importances.png": "plot_param_importances",
}
FINISHED = ("COMPLETE", "PRUNED")  # the states whose trials trained to their end or to their pruning


def _hours(trial: Any) -> float | str:
    """Hours from a finished or pruned trial's start to its end; "" for others (a failed trial's end is when it was
    found stopped, which may be long after)."""
    if trial.state.name not in FINISHED or trial.duration is None:
        return ""
    return round(trial.duration.total_seconds() / 3600, 5)


def _shown(folder: str, relative_to: Path | None) -> str:
    """A trial's run folder as a report shows it: relative to ``relative_to`` when inside it, else as recorded."""
    if relative_to is None or not folder or not Path(folder).is_relative_to(relative_to):
        return folder
    return str(Path(folder).relative_to(relative_to))


def trial_rows(study: Any, relative_to: Path | None = None) -> list[dict[str, Any]]:
    """One row per trial: number, state, each parameter, the objective, epochs trained, pruned at, hours, run
    folder (relative to ``relative_to`` when inside it)."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update({name: t.params.get(name, "") for name in names})
        row["objective"] = "" if t.values is None else ",".join(f"{v:.6g}" for v in t.values)
        row["epochs"] = t.user_attrs.get(EPOCHS_ATTR, "")
        row["pruned_at_epoch"] = t.user_attrs.get(PRUNED_ATTR, "")
        row["hours"] = _hours(t)
        row["run_folder"] = _shown(t.user_attrs.get(RUN_FOLDER_ATTR, ""), relative_to)
        rows.append(row)
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _totals(rows: list[dict[str, Any]], diverged: int) -> str:
    """One line: the trials by state, and the epochs and hours of the finished and pruned ones; and, if any, how
    many diverged (kept out of the plots)."""
    states = Counter(row["state"] for row in rows)
    done = [row for row in rows if row["state"] in FINISHED]
    epochs = sum(int(row["epochs"]) for row in done if row["epochs"] != "")
    hours = sum(float(row["hours"]) for row in done if row["hours"] != "")
    by_state = ", ".join(f"{n} {state.lower()}" for state, n in states.items())
    line = (
        f"{len(rows)} trials ({by_state}); the complete and pruned ones trained {epochs} epochs in {hours:.2f} hours "
        "(each trial's start to end)\n"
    )
    if diverged:
        line += f"\n{diverged} diverged (scored ±{FAILED_SCORE:g}, the failed value): in the table, not in the plots\n"
    return line


def _diverged(trial: Any) -> bool:
    """A trial whose run diverged: it told the study the registry's failed score (worse than any real value)."""
    return trial.values is not None and any(abs(value) >= FAILED_SCORE for value in trial.values)


def _plotted(study: Any) -> Any:
    """The study as its plots show it: without its diverged trials, whose score would flatten every other point
    onto one line; the study itself when none diverged."""
    trials = study.get_trials(deepcopy=False)
    kept = [trial for trial in trials if not _diverged(trial)]
    if len(kept) == len(trials):
        return study
    import optuna

    shown = optuna.create_study(study_name=study.study_name, directions=study.directions)
    shown.add_trials(kept)
    return shown


def _plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study, its diverged trials left out; a plot the study cannot make yet (too
    few trials) is left out too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials": such a plot is drawn empty
    made, study = [], _plotted(study)
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


def write_study_report(study: Any, folder: Path, relative_to: Path | None = None) -> list[Path]:
    """``trials.csv``, ``trials.md`` and the plots in ``folder`` (run folders relative to ``relative_to`` when
    inside it); returns the files written."""
    rows = trial_rows(study, relative_to)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "trials.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        writer.writerows(rows)
    diverged = sum(_diverged(trial) for trial in study.get_trials(deepcopy=False))
    (folder / "trials.md").write_text(f"# Study {study.study_name}\n\n{_totals(rows, diverged)}\n" + _markdown(rows))
    return [table, folder / "trials.md", *_plots(study, folder)]


def record_study(folder: Path, study_name: str, url: str | None) -> None:
    """``optuna_study.yaml`` in a sweep folder: the study's name and its database URL (a SQLite file's path made
    absolute; a server's URL without its password)."""
    from omegaconf import OmegaConf

    from advnets.store.studies import is_sqlite, sqlite_file

    shown = None
    if url:
        path = sqlite_file(url)
        if path is not None:
            shown = f"sqlite:///{path.resolve()}"
        elif not is_sqlite(url):
            from sqlalchemy.engine import make_url

            shown = make_url(url).render_as_string(hide_password=True)
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create({"study_name": study_name, "storage": shown}), folder / STUDY_FILE)


def report_sweep(folder: Path, out: Path) -> list[Path]:
    """The study report of the Optuna sweep in ``folder``, written into ``out``: its files, or ``[]`` where
    ``folder`` is no Optuna sweep folder or its study cannot be read here (said in a warning). Only a SQLite
    study is read: no server is contacted. Run folders inside the working folder are shown relative to it, as
    ``advnets-compare`` shows the runs it was given."""
    from omegaconf import OmegaConf

    from advnets.store.studies import sqlite_file

    record = folder / STUDY_FILE
    if not record.is_file():
        return []
    study = OmegaConf.load(record)
    url = str(study.get("storage") or "")
    path = sqlite_file(url)
    if path is None or not path.is_file():
        why = f"its database {path} is gone" if path is not None else f"not a SQLite file: {url or 'in memory'}"
        log.warning("study %s of %s not read (%s): no trials.csv", study.study_name, folder, why)
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        loaded = optuna.load_study(study_name=str(study.study_name), storage=url)
    except Exception as err:  # a study deleted since, a database of another Optuna
        log.warning("study %s of %s not read (%s): no trials.csv", study.study_name, folder, err)
        return []
    return write_study_report(loaded, out, relative_to=Path.cwd())


def _sweep_folders(paths: list[Path]) -> Iterator[Path]:
    """The Optuna sweep folders among ``paths`` and just below them (a multirun folder), in order."""
    for path in paths:
        if (path / STUDY_FILE).is_file():
            yield path
        else:
            yield from (record.parent for record in sorted(path.glob(f"*/{STUDY_FILE}")))


def report_sweeps(paths: list[Path], out: Path) -> list[str]:
    """The study report of each study among the Optuna sweep folders in ``paths`` or just below them
    (``advnets-compare``): into ``out`` for one study, into ``out/<sweep folder's name>`` for several; the files'
    paths relative to ``out``. The sweep folders of a continued study name the same study: it is reported once."""
    studies = {(folder / STUDY_FILE).read_text(): folder for folder in _sweep_folders(paths)}
    sweeps = list(studies.values())
    written = []
    for path in sweeps:
        folder = out if len(sweeps) == 1 else out / path.resolve().name
        written += [str(file.relative_to(out)) for file in report_sweep(path, folder)]
    return written
