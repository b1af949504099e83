"""``advnets-compare PATH...``: runs x the overrides that differ x final metrics, grouped over seeds.

Reads run folders, multirun folders or any folders holding runs (``results.json``, ``metrics.json``,
``.hydra/``, ``val_curve.csv``; no W&B, no network). Runs whose overrides differ only in the seed (or in
settings that do not change what a run is: ``advnets.store.records.NOT_A_CHANGE``, e.g. threads, paths, logger,
ckpt_path) form one group, reported as mean ± standard error over seeds; runs evaluated with other settings
are never averaged. Prints a table, writes ``compare.csv`` (groups),
``compare_runs.csv`` (runs), ``compare.md`` and ``compare_val_parzen.png`` (validation Parzen
log-likelihood per epoch, one line per group named by its runs' label, shaded ± SE over seeds where a group has
several runs; a collapsed curve is dashed, named and kept out of the y-range). Floats show 4 significant digits;
an empty panel or column says why. Runs on different datasets are not comparable: each dataset gets its own table
and panel. Whatever is skipped is said, with the reason.
"""

from __future__ import annotations

import argparse
import csv
import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from advnets.errors import UserError, fail
from advnets.logs import output
from advnets.metrics import registry
from advnets.metrics.registry import MetricSpec
from advnets.store.records import (
    RunRecord,
    describe_eval,
    eval_settings,
    eval_signature,
    find_runs,
    is_a_change,
    mean_se,
    parse_overrides,
    seeds_text,
)

# the registry's failed score of a Parzen objective (a diverged run, an evaluation that could not run): not a score
FAILED = -registry.FAILED_SCORE
# metric column -> column title; which way is better comes from advnets.metrics.registry
PARZEN_METRICS: dict[str, str] = {
    "test_parzen_ll": "test LL",
    "best_val_parzen_ll": "best val LL",
    "last_val_parzen_ll": "last val LL",
}
Columns = dict[str, MetricSpec]
"""The columns beyond Parzen: ``test_<name>`` -> the metric's registry entry (or what its results.json recorded)."""


def suite_columns(records: Sequence[RunRecord]) -> Columns:
    """``test_<name>`` for every metric beyond Parzen the runs' ``results.json`` hold: the registry's in its order,
    then each metric of one's own the runs recorded (``advnets.metrics.registry.shown``)."""
    return {f"test_{n}": spec for n, spec in registry.shown([r.results or {} for r in records]).items()}


def dataset_metrics(dataset_groups: list[Group], metrics: Sequence[str]) -> list[str]:
    """``metrics`` as one dataset's table shows them: a metric of one's own that none of its runs holds (it came
    with another dataset's runs) is left out of that table."""

    def held(m: str) -> bool:
        return any(r.values[m] is not None for g in dataset_groups for r in g.rows)

    own = [m for m in metrics if m not in PARZEN_METRICS and m.removeprefix("test_") not in registry.SUITE]
    return [m for m in metrics if m not in own or held(m)]


def title(column: str, columns: Columns) -> str:
    """A column's title: the Parzen columns' own, else the metric's registered (or recorded) title."""
    return PARZEN_METRICS.get(column) or columns[column].title


def higher_is_better(column: str, columns: Columns) -> bool:
    """Which way is better for a column, by the registry (``columns``: the metrics of one's own it does not hold)."""
    return registry.higher_is_better(column, {s.name: s for s in columns.values()})


OUTPUTS = ("compare.csv", "compare_runs.csv", "compare.md", "compare_val_parzen.png")


def _score(value: Any) -> float | None:
    """A finite metric value, or None (missing, NaN, or the failed-run marker)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > FAILED else None


def _any_score(value: Any) -> float | None:
    """A finite value of a metric beyond Parzen (either direction), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class RunRow:
    """One run's final numbers."""

    record: RunRecord
    values: dict[str, float | None]
    protocol_se: float | None
    sigma: float | None
    epochs: int | None
    diverged: bool
    pruned_at_epoch: int | None = None  # an Optuna trial stopped by the study's pruner


def run_row(record: RunRecord, columns: Columns) -> RunRow:
    results, metrics, curve = record.results or {}, record.metrics or {}, record.curve
    diverged = metrics.get("diverged_at_epoch") is not None
    # epochs trained: the largest of what the run recorded (a ddp_spawn parent may record 0)
    found = [results.get("epochs_trained"), metrics.get("diverged_at_epoch"), curve[-1][0] if curve else None]
    numbers = [int(e) for e in found if isinstance(e, int | float) and not isinstance(e, bool)]
    epochs = max(numbers) if numbers else None
    values = {
        "test_parzen_ll": None if diverged else _score(results.get("parzen_ll")),
        "best_val_parzen_ll": max(v for _, v in curve) if curve else None,
        "last_val_parzen_ll": curve[-1][1] if curve else None,
    }
    beyond = results.get("metrics") or {}
    values.update({key: None if diverged else _any_score(beyond.get(m.name)) for key, m in columns.items()})
    return RunRow(
        record,
        values,
        None if diverged else _score(results.get("parzen_se")),
        _score(results.get("sigma")),
        epochs,
        diverged,
        metrics.get("pruned_at_epoch"),
    )


@dataclass
class Group:
    """Runs of one dataset that differ only in seed (and settings in records.NOT_A_CHANGE)."""

    dataset: str
    key: tuple[tuple[str, Any], ...]
    rows: list[RunRow] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.key) or "all runs"

    @property
    def name(self) -> str:
        """What a legend calls the group: the label its runs' results.json give (one, shared by every run),
        else the overrides that set it apart, else its run folders' names."""
        labels = {str((r.record.results or {}).get("label") or "") for r in self.rows}
        if len(labels) == 1 and "" not in labels:
            return labels.pop()
        if self.key:
            return self.label
        return ", ".join(sorted({r.record.path.name for r in self.rows}))

    def stat(self, metric: str) -> tuple[float | None, float | None, int]:
        """(mean, SE over seeds, n runs with a value)."""
        values = [r.values[metric] for r in self.rows if r.values[metric] is not None]
        if not values:
            return None, None, 0
        mean, se = mean_se(values)
        return mean, se, len(values)

    def mean_of(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.rows if getattr(r, attr) is not None]
        return mean_se(values)[0] if values else None

    @property
    def seeds(self) -> str:
        """The distinct seeds, a repeated one marked ``×n``: repeats are runs, not seeds."""
        return seeds_text([r.record.seed for r in self.rows if r.record.seed is not None], sep=",")[0]

    @property
    def epochs(self) -> str:
        found = sorted({r.epochs for r in self.rows if r.epochs is not None})
        return "—" if not found else str(found[0]) if len(found) == 1 else f"{found[0]}–{found[-1]}"

    @property
    def diverged(self) -> int:
        return sum(r.diverged for r in self.rows)


SHORT_FLOAT = 8  # characters: a float written as short as this is shown in full


def _text(value: Any) -> str:
    """An override's value as shown: a float to 4 significant digits (a sampled ``lr=0.0003604``) unless it is
    short in full (``lr_decay=1.00002`` stays), the rest as written."""
    if value is None:
        return "null"
    if isinstance(value, float) and len(repr(value)) > SHORT_FLOAT:
        return f"{value:.4g}"
    return str(value)


def _raw(value: Any) -> str:
    """An override's value as the CSV keeps it: exact."""
    return "null" if value is None else str(value)


def differing_keys(records: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value differs between the runs (or that only some runs set), seed excluded."""
    parsed = [parse_overrides(r.overrides) for r in records]
    keys = sorted({k for p in parsed for k in p})
    missing = object()
    return [k for k in keys if is_a_change(k) and len({repr(p.get(k, missing)) for p in parsed}) > 1]


def group_runs(
    records: Sequence[RunRecord], columns: Columns | None = None
) -> tuple[dict[str, list[Group]], dict[str, list[str]]]:
    """Per dataset: the groups (runs that differ only in seed) and the differing override keys; each run's values
    of the Parzen columns and of ``columns`` (default: ``suite_columns(records)``)."""
    columns = suite_columns(records) if columns is None else columns
    by_dataset: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_dataset[record.dataset].append(record)
    groups: dict[str, list[Group]] = {}
    keys_of: dict[str, list[str]] = {}
    for dataset in sorted(by_dataset):
        runs = by_dataset[dataset]
        keys = differing_keys(runs)
        found: dict[tuple, Group] = {}
        evaluated = [r for r in runs if r.results]  # a pruned run, or one with evaluate=false, has no protocol
        settings = [eval_settings(r.results) for r in evaluated]
        split_eval = len({eval_signature(r.results) for r in evaluated}) > 1  # never average different protocols
        for record in runs:
            parsed = parse_overrides(record.overrides)
            key = tuple((k, parsed.get(k)) for k in keys if k in parsed)
            if split_eval:
                protocol = describe_eval(eval_settings(record.results), settings) or "default"
                key += (("protocol", protocol if record.results else "not evaluated"),)
            found.setdefault(key, Group(dataset, key)).rows.append(run_row(record, columns))
        groups[dataset], keys_of[dataset] = list(found.values()), keys + (["protocol"] if split_eval else [])
    return groups, keys_of


def _sort(groups: list[Group], metric: str, columns: Columns) -> list[Group]:
    """Best first by ``metric`` in its registered direction (groups without it last), then by label."""
    sign = -1.0 if higher_is_better(metric, columns) else 1.0
    return sorted(groups, key=lambda g: (g.stat(metric)[0] is None, sign * (g.stat(metric)[0] or 0.0), g.label))


def _decimals(value: float, significant: int = 4) -> int:
    """Decimals that show ``value`` to ``significant`` digits (none for a large number)."""
    if value == 0 or not math.isfinite(value):
        return significant - 1
    return max(significant - 1 - math.floor(math.log10(abs(value))), 0)


def _fmt(mean: float | None, se: float | None = None) -> str:
    """A value to 4 significant digits; with its SE, both to the mean's decimals (``184.1 ± 2.3``)."""
    if mean is None:
        return "—"
    digits = _decimals(mean)
    return f"{mean:.{digits}f}" if se is None else f"{mean:.{digits}f} ± {se:.{digits}f}"


def table_rows(
    groups: list[Group], keys: list[str], metrics: list[str], columns: Columns
) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells, one row per group (shared by the terminal table and Markdown)."""
    header = [*keys, "runs", "seeds"]
    header += [title(m, columns) for m in metrics]
    header += ["LL SE (test images)", "sigma", "epochs", "diverged"]
    rows = []
    for g in groups:
        parsed = dict(g.key)
        cells = [_text(parsed[k]) if k in parsed else "—" for k in keys]
        cells += [str(len(g.rows)), g.seeds or "—"]
        for m in metrics:
            mean, se, _ = g.stat(m)
            cells.append(_fmt(mean, se))
        cells += [_fmt(g.mean_of("protocol_se")), _fmt(g.mean_of("sigma")), g.epochs, str(g.diverged)]
        rows.append(cells)
    return header, rows


def markdown(
    groups: dict[str, list[Group]],
    keys_of: dict[str, list[str]],
    metrics: list[str],
    notes: list[str],
    columns: Columns,
) -> str:
    lines = ["# advnets-compare", ""]
    for dataset, dataset_groups in groups.items():
        header, rows = table_rows(dataset_groups, keys_of[dataset], dataset_metrics(dataset_groups, metrics), columns)
        lines += [f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    lines.append(
        f"{se_caption(groups)}; LL SE (test images): the protocol's own error, averaged over the group's runs."
    )
    beyond = [f"{spec.title} {spec.arrow}" for m, spec in columns.items() if m in metrics]
    if beyond:
        lines.append(f"Beyond Parzen (samples vs test images, domain classifier): {', '.join(beyond)}.")
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, groups: dict[str, list[Group]], keys_of: dict[str, list[str]], metrics: list[str]) -> None:
    all_keys = sorted({k for keys in keys_of.values() for k in keys})
    fields = ["dataset", "group", *all_keys, "runs", "seeds"]
    for m in metrics:
        fields += [f"{m}_mean", f"{m}_se", f"{m}_n"]
    fields += ["parzen_se_test_images", "sigma", "epochs", "diverged", "paths"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for dataset, dataset_groups in groups.items():
            for g in dataset_groups:
                parsed = dict(g.key)
                row: dict[str, Any] = {"dataset": dataset, "group": g.label, "runs": len(g.rows), "seeds": g.seeds}
                row.update({k: _raw(parsed[k]) for k in all_keys if k in parsed})
                for m in metrics:
                    mean, se, n = g.stat(m)
                    row.update({f"{m}_mean": mean, f"{m}_se": se, f"{m}_n": n})
                row.update(
                    parzen_se_test_images=g.mean_of("protocol_se"),
                    sigma=g.mean_of("sigma"),
                    epochs=g.epochs,
                    diverged=g.diverged,
                    paths=";".join(str(r.record.path) for r in g.rows),
                )
                writer.writerow(row)


def write_runs_csv(path: Path, groups: dict[str, list[Group]], columns: Columns) -> None:
    fields = ["dataset", "group", "seed", *PARZEN_METRICS, *columns, "parzen_se_test_images", "sigma", "epochs"]
    fields += ["diverged"]
    fields += ["pruned_at_epoch", "path"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for dataset, dataset_groups in groups.items():
            for g in dataset_groups:
                for r in g.rows:
                    writer.writerow(
                        {
                            "dataset": dataset,
                            "group": g.label,
                            "seed": r.record.seed,
                            **r.values,
                            "parzen_se_test_images": r.protocol_se,
                            "sigma": r.sigma,
                            "epochs": r.epochs,
                            "diverged": r.diverged,
                            "pruned_at_epoch": r.pruned_at_epoch,
                            "path": str(r.record.path),
                        }
                    )


def curve_stats(group: Group) -> tuple[list[int], list[float], list[float | None]]:
    """Per epoch: mean validation Parzen LL over the group's runs that reached it, and its SE over seeds."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in group.rows:
        for epoch, value in r.record.curve:
            by_epoch[epoch].append(value)
    epochs = sorted(by_epoch)
    stats = [mean_se(by_epoch[e]) for e in epochs]
    return epochs, [m for m, _ in stats], [s for _, s in stats]


def no_curve_reason(rows: Sequence[RunRow]) -> str:
    """Why runs have no validation curve, in words."""
    files = [r.record.path / "val_curve.csv" for r in rows]
    if not any(f.is_file() for f in files):
        return (
            "no run has a val_curve.csv (the validation Parzen monitor was off, callbacks.parzen_monitor."
            "every_n_epochs=0, or every run ended before its first check)"
        )
    if all(r.diverged for r in rows):
        return "every run diverged before its first validation check"
    return "val_curve.csv holds no finite value (every check found a diverged generator)"


def collapsed_groups(curves: dict[str, list[float]]) -> set[str]:
    """Groups whose validation curve collapsed: it ends further below the lowest start of the other groups than
    those climbed from there to their best. Such a curve would flatten every other one: it is clipped from the
    y-range, drawn dashed and named. A single group is never collapsed (nothing to compare it with)."""
    found = set()
    for name, values in curves.items():
        others = [v for n, v in curves.items() if n != name and v]
        if not values or not others:
            continue
        start = min(v[0] for v in others)
        top = max(max(v) for v in others)
        if values[-1] < start - max(top - start, 1.0):
            found.add(name)
    return found


@dataclass
class Line:
    """One group's curve as drawn."""

    label: str
    epochs: list[int]
    means: list[float]
    ses: list[float | None]
    n: int
    collapsed: bool


def plot_lines(dataset_groups: Sequence[Group]) -> list[Line]:
    """The groups with a validation curve, as they are drawn: labelled by ``Group.name``, ± SE over seeds only
    where a group has several runs, collapsed curves marked."""
    stats = {id(g): curve_stats(g) for g in dataset_groups}
    curves = {str(id(g)): stats[id(g)][1] for g in dataset_groups if stats[id(g)][0]}
    collapsed = collapsed_groups(curves)
    lines = []
    for g in dataset_groups:
        epochs, means, ses = stats[id(g)]
        if not epochs:
            continue
        n = max(sum(1 for r in g.rows if any(e == epoch for e, _ in r.record.curve)) for epoch in epochs)
        label = g.name + (f" (mean ± SE over {n} runs)" if n > 1 else "")
        down = str(id(g)) in collapsed
        if down:
            label += f" — collapsed: down to {_fmt(min(means))} nats, below the axis"
        lines.append(Line(label, epochs, means, ses if n > 1 else [None] * len(ses), n, down))
    return lines


def y_range(lines: Sequence[Line]) -> tuple[float, float] | None:
    """The y-range of the curves that did not collapse (their SE bands included), with a margin."""
    kept = [line for line in lines if not line.collapsed] or list(lines)
    lows = [m - (s or 0.0) for line in kept for m, s in zip(line.means, line.ses, strict=True)]
    highs = [m + (s or 0.0) for line in kept for m, s in zip(line.means, line.ses, strict=True)]
    if not lows:
        return None
    pad = max((max(highs) - min(lows)) * 0.05, 0.5)
    return min(lows) - pad, max(highs) + pad


def figure(groups: dict[str, list[Group]]) -> Any:
    """One panel per dataset, one line per group (its runs' label), shaded ± SE over seeds where there are
    several; integer epochs; a panel without a curve says why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.2), squeeze=False)
    for ax, (dataset, dataset_groups) in zip(axes[0], groups.items(), strict=False):
        ax.set_title(f"{dataset}: validation Parzen log-likelihood")
        lines = plot_lines(dataset_groups)
        if not lines:
            why = no_curve_reason([r for g in dataset_groups for r in g.rows])
            ax.text(0.5, 0.5, textwrap.fill(f"no validation curve: {why}", 60), ha="center", va="center", wrap=True)
            ax.set_axis_off()
            continue
        for line in lines:
            label = textwrap.fill(line.label, 70, subsequent_indent="  ")
            style = {"linestyle": "--", "alpha": 0.7} if line.collapsed else {}
            drawn = ax.plot(line.epochs, line.means, marker="o", markersize=3, label=label, **style)[0]
            band = [(e, m, s) for e, m, s in zip(line.epochs, line.means, line.ses, strict=True) if s is not None]
            if band:
                ax.fill_between(
                    [e for e, _, _ in band],
                    [m - s for _, m, s in band],
                    [m + s for _, m, s in band],
                    color=drawn.get_color(),
                    alpha=0.2,
                )
        limits = y_range(lines)
        if limits is not None:
            ax.set_ylim(*limits)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        several = any(line.n > 1 for line in lines)
        ax.set_ylabel("nats (mean ± SE over seeds)" if several else "nats")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
    return fig


def plot(path: Path, groups: dict[str, list[Group]]) -> None:
    """``figure`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(groups)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def empty_column_notes(groups: dict[str, list[Group]], metrics: Sequence[str], columns: Columns) -> list[str]:
    """Why a metric column is empty for every group of a dataset, and which curves collapsed."""
    notes = []
    for dataset, dataset_groups in groups.items():
        rows = [r for g in dataset_groups for r in g.rows]
        for m in dataset_metrics(dataset_groups, metrics):
            if any(r.values[m] is not None for r in rows):
                continue
            if m in ("best_val_parzen_ll", "last_val_parzen_ll"):
                why = no_curve_reason(rows)
            elif all(r.diverged for r in rows):
                why = "every run diverged: nothing was evaluated"
            elif m == "test_parzen_ll":
                why = "no run was evaluated (evaluate=false) or every evaluation failed"
            else:
                why = "no results.json holds it (eval.metrics without it)"
            notes.append(f"{dataset}: {title(m, columns)} is — for every run: {why}")
        for line in plot_lines(dataset_groups):
            if line.collapsed:
                notes.append(f"{dataset}: {line.label}; its curve is dashed, the plot's y-range is the other curves'")
    return notes


def se_caption(groups: dict[str, list[Group]], short: bool = False) -> str:
    """What ± means in the tables: SE over seeds where some group has several runs, else that there is none."""
    several = any(len(g.rows) > 1 for gs in groups.values() for g in gs)
    if short:
        return "Parzen LL (nats): mean ± SE over seeds" if several else "Parzen LL (nats): one run per group, no ±"
    if several:
        return "Parzen log-likelihood (nats): mean ± standard error over seeds (no ± for a single run)"
    return "Parzen log-likelihood (nats): one run per group, so no ± over seeds"


def terminal_columns(header: list[str], rows: list[list[str]], n_keys: int, width: int) -> list[int]:
    """Which columns of the table fit ``width`` characters: the override keys, runs and seeds, then the metrics
    and facts in the table's order while they fit (the CSV and Markdown files keep every column)."""

    def needed(i: int) -> int:
        return max([len(header[i]), *(len(r[i]) for r in rows)]) + 3  # rich's padding and border

    chosen = list(range(min(n_keys + 2, len(header))))
    used = 1 + sum(needed(i) for i in chosen)
    for i in range(len(chosen), len(header)):
        if used + needed(i) <= width:
            chosen.append(i)
            used += needed(i)
    return chosen


def _print_tables(
    groups: dict[str, list[Group]],
    keys_of: dict[str, list[str]],
    metrics: list[str],
    notes: list[str],
    columns: Columns,
) -> None:
    import shutil

    from rich.console import Console
    from rich.table import Table

    width = shutil.get_terminal_size((120, 24)).columns  # $COLUMNS, else the terminal's width, else 120
    console = Console(width=width)
    for dataset, dataset_groups in groups.items():
        header, rows = table_rows(dataset_groups, keys_of[dataset], dataset_metrics(dataset_groups, metrics), columns)
        n_keys = len(keys_of[dataset])
        shown = terminal_columns(header, rows, n_keys, width)
        left_out = len(header) - len(shown)
        caption = f"{se_caption(groups, short=True)}; LL SE: the protocol's error over test images"
        if left_out:
            caption += f"; {left_out} more columns in compare.md / compare.csv"
        table = Table(title=f"advnets-compare: {dataset}", caption=caption)
        for i in shown:
            key_column = i < n_keys
            table.add_column(
                header[i], justify="left" if key_column else "right", overflow="fold", no_wrap=not key_column
            )
        for row in rows:
            table.add_row(*(row[i] for i in shown))
        console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def compare(
    paths: Sequence[Path], out: Path, metrics: Sequence[str] | None = None
) -> tuple[dict[str, list[Group]], list[tuple[Path, str]], list[str]]:
    """Find, group and write everything; returns (groups per dataset, skipped, notes)."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist; give run folders, multirun folders or folders holding runs")
    for metric in metrics or []:
        check_metric_form(metric)
    records, skipped = find_runs(paths)
    if not records:
        why = "; ".join(f"{p}: {reason}" for p, reason in skipped)
        raise UserError(f"no finished runs in {', '.join(map(str, paths))}" + (f" ({why})" if why else ""))
    columns = suite_columns(records)
    for metric in metrics or []:  # a registered metric no run holds: an empty column, and a note saying why
        name = metric.removeprefix("test_")
        if metric not in PARZEN_METRICS and metric not in columns and name in registry.SUITE:
            columns[metric] = registry.METRICS[name]
    unknown = [m for m in metrics or [] if m not in PARZEN_METRICS and m not in columns]
    if unknown:
        allowed = ", ".join(dict.fromkeys([*PARZEN_METRICS, *(f"test_{n}" for n in registry.SUITE), *columns]))
        raise UserError(f"--metric {unknown[0]}: not registered, and no run here records it; allowed: {allowed}")
    groups, keys_of = group_runs(records, columns)
    present = [m for m in columns if any(r.values[m] is not None for gs in groups.values() for g in gs for r in g.rows)]
    chosen = list(dict.fromkeys(metrics or [*PARZEN_METRICS, *present]))
    groups = {d: _sort(g, chosen[0], columns) for d, g in groups.items()}
    notes = [f"skipped {p}: {reason}" for p, reason in skipped] + empty_column_notes(groups, chosen, columns)
    held = dict.fromkeys(n for r in records for n in ((r.results or {}).get("metrics") or {}))
    untitled = [n for n in held if f"test_{n}" not in columns]
    notes += [f"left out metric {n}: neither the registry nor results.json gives its title" for n in untitled]
    if len(groups) > 1:
        notes.append(
            f"runs on different datasets ({', '.join(groups)}): reported in separate tables and panels; "
            "their log-likelihoods are not comparable"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "compare.csv", groups, keys_of, chosen)
        write_runs_csv(out / "compare_runs.csv", groups, columns)
        (out / "compare.md").write_text(markdown(groups, keys_of, chosen, notes, columns))
        plot(out / "compare_val_parzen.png", groups)
    except OSError as err:
        raise UserError(f"cannot write to --out {out} ({err.strerror or err})") from None
    _print_tables(groups, keys_of, chosen, notes, columns)
    return groups, skipped, notes


def check_metric_form(metric: str) -> None:
    """``--metric``: a Parzen column or ``test_<metric>`` (which runs hold it is known once they are read)."""
    if metric not in PARZEN_METRICS and not metric.startswith("test_"):
        choices = ", ".join([*PARZEN_METRICS, *(f"test_{n}" for n in registry.SUITE), "test_<your metric>"])
        raise UserError(f"argument --metric: invalid choice: {metric!r} (choose from {choices})")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every advnets mistake
        fail(f"{message} (see advnets-compare --help)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = _Parser(prog="advnets-compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders or folders holding runs")
    parser.add_argument("--out", type=Path, help="where compare.csv/.md/.png go (default: the first PATH folder)")
    parser.add_argument(
        "--metric",
        action="append",
        help="metric column to show: test_parzen_ll, best_val_parzen_ll, last_val_parzen_ll or test_<metric> "
        "(repeatable; default: all); groups are sorted by the first, best first",
    )
    args = parser.parse_args(argv)
    first = args.paths[0]
    out = args.out or (first if first.is_dir() else first.parent)
    try:
        compare(args.paths, out, args.metric)
    except UserError as err:
        fail(str(err))
    from advnets.search.study_report import report_sweeps  # an Optuna sweep folder: its study's trials and plots

    output(f"advnets-compare: wrote {', '.join([*OUTPUTS, *report_sweeps(args.paths, out)])} to {out}")


if __name__ == "__main__":
    main()
