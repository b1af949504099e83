"""``advnets-report PATH...``: the paper's Table 1 with our runs added as rows (Markdown).

Reads the ``results.json`` of the run folders given or found below the given folders (``advnets.store.records``,
as advnets-compare finds them). Runs that differ only in their seed (or in settings that do not change what a
run is: ``records.NOT_A_CHANGE``) form one row, reported as mean ± standard error over seeds; a single run shows
the protocol's own standard error over test images. Rows say what they change, the sigma, epochs, wall time and
hardware.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advnets.errors import UserError, fail
from advnets.logs import output
from advnets.metrics import registry
from advnets.metrics.registry import METRICS, MetricSpec
from advnets.store.records import (
    changes,
    describe_eval,
    eval_settings,
    eval_signature,
    mean_se,
    override_key,
    run_folders,
    seeds_text,
)

# Table 1 of Goodfellow et al. (2014): Parzen window log-likelihood (nats), mean ± standard error.
PAPER_TABLE1: list[tuple[str, str, str]] = [
    ("DBN", "138 ± 2", "1909 ± 66"),
    ("Stacked CAE", "121 ± 1.6", "2110 ± 50"),
    ("Deep GSN", "214 ± 1.1", "1890 ± 29"),
    ("Adversarial nets", "225 ± 2", "2057 ± 26"),
]
DATASET_COLUMNS = ("mnist", "tfd")
REQUIRED = ("parzen_ll", "parzen_se", "sigma", "dataset")


def find_results(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The ``results.json`` of every run folder given or found below the given folders, and one note per path or
    run folder that holds none (and why)."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist; give results.json files or folders that hold them")
    folders, skipped = run_folders(paths)
    notes = [f"skipped {path}: {why}" for path, why in skipped]
    found = []
    for folder in folders:
        if (folder / "results.json").is_file():
            found.append(folder / "results.json")
        elif (pruned := _pruned_at(folder)) is not None:
            notes.append(f"skipped {folder}: pruned at epoch {pruned} (an Optuna trial the study's pruner stopped)")
        else:
            notes.append(f"skipped {folder}: no results.json (not evaluated: evaluate=false, diverged, or unfinished)")
    return found, notes


def _pruned_at(folder: Path) -> int | None:
    """The epoch a pruned Optuna trial stopped after (its ``metrics.json``), else None."""
    try:
        return json.loads((folder / "metrics.json").read_text()).get("pruned_at_epoch")
    except (OSError, ValueError, AttributeError):
        return None


def load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(results, "") or (None, why it cannot be reported)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return None, f"unreadable ({err})"
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    return data, ""


def label(result: dict[str, Any]) -> str:
    """What a run is, named by what it changes: its given label, else the experiment plus its overrides that
    change what a run is (``records.changes``; an ``advnets-eval`` result: the checkpoint it scored)."""
    if result.get("label"):
        return str(result["label"])
    changed = [o for o in changes(result.get("overrides", [])) if override_key(o) != "experiment"]  # the name
    name = result.get("experiment") or (f"checkpoint {result['checkpoint']}" if result.get("checkpoint") else "run")
    return f"{name} ({', '.join(changed)})" if changed else str(name)


PAPER_PROTOCOL = {"n_samples": 10_000, "n_valid": 1000, "grid_size": 10}
"""The paper's Parzen protocol [code] parzen_ll.py: 10,000 samples, sigma chosen on 1,000 validation images over
a grid of 10, the whole test set (MNIST and TFD)."""


def off_protocol(result: dict[str, Any]) -> str:
    """How a result's evaluation differs from the paper's protocol, in words ("" when it does not)."""
    given = result.get("eval") or {}
    differences = []
    n_samples = result.get("n_samples")  # what a result does not record is not held against it
    if isinstance(n_samples, int) and n_samples != PAPER_PROTOCOL["n_samples"]:
        differences.append(f"{n_samples:,} samples")
    n_valid = result.get("n_valid", given.get("n_valid"))
    if n_valid is not None and n_valid != PAPER_PROTOCOL["n_valid"]:
        differences.append(f"sigma chosen on {n_valid} validation images")
    if given.get("sigma") is not None:
        differences.append(f"sigma fixed at {given['sigma']}")
    elif len(result.get("grid") or given.get("grid") or []) not in (0, PAPER_PROTOCOL["grid_size"]):
        differences.append("another sigma grid")
    return ", ".join(differences)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _epochs(results: list[dict[str, Any]], key: str) -> str:
    values = [r.get(key) for r in results]
    found = sorted({int(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)})
    return ", ".join(map(str, found)) if found else "—"


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from runs that differ only in seed (or TFD fold): mean ± SE over seeds, or the single run's own SE.

    Runs on several folds (TFD, Table 1's protocol [paper]: sigma chosen per fold on that fold's validation set)
    give the mean over folds ± the standard error across folds, each fold first averaged over its seeds. Runs
    that repeat one seed are counted as runs, not seeds, and flagged as repeats."""
    seeds, n_seeds, repeated = seeds_text([r.get("seed", "—") for r in results])
    by_fold: dict[Any, list[float]] = defaultdict(list)
    for r in results:
        by_fold[r.get("fold")].append(r["parzen_ll"])
    if len(by_fold) > 1:
        mean, se = mean_se([math.fsum(v) / len(v) for v in by_fold.values()])
        se_kind = f"{len(by_fold)} folds"
    else:
        mean, se = mean_se([r["parzen_ll"] for r in results])
        plural = "s" if n_seeds > 1 else ""
        se_kind = f"{len(results)} runs of {n_seeds} seed{plural} (repeats)" if repeated else f"{n_seeds} seeds"
    if se is None:
        se, se_kind = results[0]["parzen_se"], "test images"
    hours = [r["train_seconds"] / 3600 for r in results if r.get("train_seconds") is not None]
    return {
        "label": label(results[0]),
        "dataset": results[0]["dataset"],
        "ll": mean,
        "se": se,
        "se_over": se_kind,
        "sigma": ", ".join(sorted({f"{r['sigma']:.4g}" for r in results})),
        "epochs_trained": _epochs(results, "epochs_trained"),
        "best_epoch": _epochs(results, "epoch"),
        "hours": sum(hours) / len(hours) if hours else None,
        "hardware": ", ".join(sorted({str(r.get("hardware", "—")) for r in results})),
        "seeds": seeds,
        "off_protocol": off_protocol(results[0]),
    }


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (label, dataset, evaluation settings): runs evaluated differently are never averaged."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(label(r), r["dataset"], eval_signature(r))].append(r)
    settings = [eval_settings(r) for r in results]
    out = []
    for (name, dataset, _), group in groups.items():
        row = summarise(group)
        same = [s for r, s in zip(results, settings, strict=True) if (label(r), r["dataset"]) == (name, dataset)]
        note = describe_eval(eval_settings(group[0]), same)
        row["label"] = f"{name} [{note}]" if note else name
        out.append(row)
    return sorted(out, key=lambda row: (row["dataset"], row["label"]))


def markdown(our_rows: list[dict[str, Any]]) -> str:
    """Table 1 as the paper has it, then our rows, then a details table."""
    lines = [
        "| Model | MNIST | TFD |",
        "|---|---|---|",
        *[f"| {name} (paper) | {mnist} | {tfd} |" for name, mnist, tfd in PAPER_TABLE1],
    ]
    for row in our_rows:
        if row["dataset"] not in DATASET_COLUMNS:
            continue  # another dataset: only in the details table below
        cell = f"{_fmt(row['ll'])} ± {_fmt(row['se'])}"
        name = f"advnets: {row['label']}"
        if row["off_protocol"]:  # never in bold beside the paper's numbers
            name += f" (not the paper's protocol: {row['off_protocol']})"
        else:
            cell = f"**{cell}**"
        mnist, tfd = (cell, "—") if row["dataset"] == "mnist" else ("—", cell)
        lines.append(f"| {name} | {mnist} | {tfd} |")
    lines += [
        "",
        "| advnets run | dataset | log-likelihood (nats) | ± over | sigma | epochs trained | best epoch | train hours "
        "| hardware | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in our_rows:
        lines.append(
            f"| {row['label']} | {row['dataset']} | {_fmt(row['ll'], 2)} ± {_fmt(row['se'], 2)} | {row['se_over']} "
            f"| {row['sigma']} | {row['epochs_trained']} | {row['best_epoch']} | {_fmt(row['hours'], 2)} "
            f"| {row['hardware']} | {row['seeds']} |"
        )
    lines += ["", *[f"- {note}" for note in details_notes(our_rows)]]
    return "\n".join(lines) + "\n"


EMPTY_CELLS = {  # column -> why a row shows "—" there
    "epochs_trained": "epochs trained: — where results.json records none (an advnets-eval result, an older run)",
    "best_epoch": "best epoch (the evaluated checkpoint's): — where results.json records none",
    "hours": "train hours: — where results.json records no training time (an advnets-eval result, a run evaluated "
    "again)",
    "hardware": "hardware: — where results.json records none",
    "seeds": "seeds: — where results.json records none",
}


def details_notes(our_rows: list[dict[str, Any]]) -> list[str]:
    """What the details table's columns mean, and why a cell is empty where one is."""
    notes = [
        "± over: the standard error over distinct seeds (or TFD folds); for a single run, the protocol's own "
        "error over test images. Repeats of one seed are flagged (×n), never counted as seeds.",
        "epochs trained: how long the run trained; best epoch: the epoch of the checkpoint evaluated.",
    ]
    for key, why in EMPTY_CELLS.items():
        if any(row[key] in (None, "—") or "—" in str(row[key]).split(", ") for row in our_rows):
            notes.append(why + ".")
    return notes


def _title(metric: MetricSpec) -> str:
    """A metric's column title and which way is better, as the registry (or its results.json record) says."""
    return f"{metric.title} {metric.arrow}"


def beyond_markdown(results: list[dict[str, Any]]) -> str:
    """The metrics beyond Parzen (mean over seeds) per row, and per dataset the real-vs-real floor; "" if none.
    Its columns: every metric of the registry the runs hold, then each metric of one's own they recorded
    (``advnets.metrics.registry.shown``), titled as the registry or the record says."""
    with_metrics = [r for r in results if r.get("metrics")]
    if not with_metrics:
        return ""
    metrics = registry.shown(with_metrics)  # every registered metric the runs hold, then their own, with titles
    names = list(metrics)
    lines = [
        "**Beyond the paper's metric** (advnets.metrics; ↑ / ↓: which way is better)",
        "",
        "| advnets run | dataset | " + " | ".join(_title(m) for m in metrics.values()) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in with_metrics:
        groups[(label(r), r["dataset"], eval_signature(r))].append(r)
    floors: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)  # (dataset, samples): the references
    for (name, dataset, _), group in sorted(groups.items()):
        cells = []
        for n in names:
            values = [r["metrics"][n] for r in group if n in r["metrics"]]
            cells.append(_fmt(mean_se(values)[0], 3) if values else "—")
        lines.append(f"| {name} | {dataset} | " + " | ".join(cells) + " |")
        for r in group:
            if r.get("metrics_reference"):
                floors[(dataset, int(r.get("n_samples") or 0))].append(r["metrics_reference"])
    distinct: dict[str, list[tuple[int, dict[str, float]]]] = defaultdict(list)  # per dataset: its distinct floors
    for (dataset, n_samples), refs in sorted(floors.items()):
        # averaged over the runs: KID and IS draw their subsets and splits with each run's seed
        floor = {n: mean_se(v)[0] for n in names if (v := [ref[n] for ref in refs if ref.get(n) is not None])}
        if floor not in [f for _, f in distinct[dataset]]:
            distinct[dataset].append((n_samples, floor))
    for dataset, rows in distinct.items():
        for n_samples, floor in rows:
            name = (
                f"real vs real ({n_samples} training images as samples)"
                if len(rows) > 1
                else "real vs real (training images as samples)"
            )
            lines.append(f"| *{name}* | {dataset} | " + " | ".join(_fmt(floor.get(n), 3) for n in names) + " |")
    lines.append("")
    protocols = {r["dataset"]: r.get("metrics_protocol", {}) for r in reversed(with_metrics)}
    for dataset, protocol in sorted(protocols.items()):
        classifier = protocol.get("classifier", {}).get("dataset", dataset)
        lines.append(
            f"{dataset}: samples vs the {protocol.get('n_real', '?')} {dataset} test images, through the {classifier} "
            f"domain classifier (its LeNet's penultimate layer); precision/recall k = {protocol.get('pr_k', '?')}, "
            f"density/coverage k = {protocol.get('dc_k', '?')}"
            + (
                f"; the floor row: the first {protocol['n_floor']} {dataset} training images."
                if "n_floor" in protocol
                else "."
            )
        )
    lines.append(
        "nearest sq. dist: mean squared pixel distance from a test image to its nearest sample. "
        "The floor row scores real training images in place of samples: as many as there are samples, or all of "
        "them where the training set is smaller; its KID and IS, drawn with each run's seed, are the mean over "
        "the runs."
    )
    lines += [f"{m.title}: {m.description}." for n, m in metrics.items() if n not in METRICS and m.description]
    return "\n".join(lines) + "\n"


def report(paths: Sequence[Path]) -> tuple[str, list[str]]:
    """The Markdown, and one note per results.json that was skipped (and why)."""
    files, skipped = find_results(paths)
    loaded = []
    for f in files:
        data, why = load(f)
        if data is None:
            skipped.append(f"skipped {f}: {why}")
        else:
            loaded.append(data)
    if not loaded:
        raise UserError(f"no usable results.json in {', '.join(map(str, paths))}" + "".join(f"; {s}" for s in skipped))
    held = dict.fromkeys(n for r in loaded for n in (r.get("metrics") or {}))
    titled = registry.shown(loaded)
    skipped += [
        f"left out metric {n}: neither the registry nor results.json gives its title" for n in held if n not in titled
    ]
    beyond = beyond_markdown(loaded)
    return markdown(rows(loaded)) + (f"\n{beyond}" if beyond else ""), skipped


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="advnets-report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="results.json files or folders holding them")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    try:
        text, skipped = report(args.paths)
    except UserError as err:
        fail(str(err))
    for note in skipped:
        output(f"advnets-report: {note}", stream=sys.stderr)
    if args.out:
        args.out.write_text(text)
    output(text, end="")


if __name__ == "__main__":
    main()
