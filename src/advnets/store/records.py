"""Run folders on disk, read back: what each finished advnets run left (config, overrides, results, curve).

A run folder is a folder with ``.hydra/config.yaml`` (Hydra writes it when a job starts) or a ``results.json`` (a
result copied on its own). It is finished when it holds ``results.json`` (the paper protocol ran) or at least
``metrics.json`` (training ended, e.g. diverged or ``evaluate=false``); a folder with neither is a run still
going, killed or crashed, and is skipped with that reason. Runs that differ only in overrides of
``NOT_A_CHANGE`` are the same run as far as results go. ``advnets-compare`` and ``advnets-report`` find and
group runs through this module alone; it needs neither W&B nor a network.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
# folders inside a run or a sweep that never hold runs: not searched
_NOT_RUNS = {"checkpoints", "samples", "wandb", "__pycache__"}
NOT_A_CHANGE = (
    *("seed", "threads", "paths", "ckpt_path", "allow_config_change", "logger", "callbacks.progress_bar", "hydra"),
    "dataset.fold",  # a TFD fold is one part of one Table 1 entry: folds are averaged like seeds
    # the evaluation's settings: runs are told apart by the protocol their results.json records (eval_signature)
    *("eval.n_samples", "eval.n_valid", "eval.grid", "eval.sigma", "eval.precision", "eval.seed"),
    *("eval.interpolation_rows", "eval.interpolation_steps", "eval.metrics", "eval.reference", "eval.suite"),
    "eval.extra_metrics",
)
"""Override keys (and the keys below them) that do not change what a run is: runs differing only in these are
averaged into one row by advnets-report and one group by advnets-compare."""


def override_key(override: str) -> str:
    """The key an override sets: ``+a.b=1`` -> ``a.b``, ``~c`` -> ``c``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_a_change(key: str) -> bool:
    """Whether an override of ``key`` changes what a run is (see ``NOT_A_CHANGE``)."""
    return not any(key == p or key.startswith((f"{p}.", f"{p}/")) for p in NOT_A_CHANGE)


def changes(overrides: Sequence[str]) -> list[str]:
    """The overrides that change what a run is, in their order."""
    return [o for o in overrides if is_a_change(override_key(o))]


@dataclass
class RunRecord:
    """One finished run folder: its composed config (interpolations left as written), its command-line
    overrides, ``results.json`` and ``metrics.json`` (None when absent), and the validation curve
    ``[(epoch, val_parzen_ll), ...]`` from ``val_curve.csv`` (sorted by epoch, one point per epoch)."""

    path: Path
    config: dict
    overrides: list[str]
    results: dict | None
    metrics: dict | None
    curve: list[tuple[int, float]]

    @property
    def dataset(self) -> str:
        """The dataset the run was trained and evaluated on (``results.json``, else the config)."""
        if self.results and self.results.get("dataset"):
            return str(self.results["dataset"])
        dataset = self.config.get("dataset")
        if isinstance(dataset, dict) and dataset.get("name"):
            return str(dataset["name"])
        return "unknown"

    @property
    def seed(self) -> int | None:
        """The run's seed (``results.json``, else the config); None when neither has a plain integer."""
        for source in (self.results or {}, self.config):
            value = source.get("seed")
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                return value
            if isinstance(value, str) and value.lstrip("-").isdigit():
                return int(value)
        return None


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std with ddof=1 over sqrt(n)); SE is None for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def seeds_text(seeds: Sequence[Any], sep: str = ", ") -> tuple[str, int, bool]:
    """The distinct seeds of a group's runs (a seed run more than once marked ``×n``, and the text then ends in
    "(repeats)"), their number, and whether any seed was repeated: repeats of one seed are runs, not seeds, and say
    nothing about the spread over seeds."""
    counts: dict[str, int] = {}
    for seed in seeds:
        counts[str(seed)] = counts.get(str(seed), 0) + 1
    order = sorted(counts, key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    text = sep.join(s if counts[s] == 1 else f"{s} ×{counts[s]}" for s in order)
    repeated = any(n > 1 for n in counts.values())
    return (f"{text} (repeats)" if repeated else text), len(counts), repeated


def _read_json(path: Path) -> tuple[dict | None, str]:
    """(data, "") or (None, why not); a missing file is (None, "")."""
    if not path.is_file():
        return None, ""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path.name} is unreadable ({err})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, ""


def read_curve(path: Path) -> list[tuple[int, float]]:
    """``val_curve.csv`` as [(epoch, val_parzen_ll)]: finite values only; a resumed run that wrote an epoch
    twice keeps the later value."""
    if not path.is_file():
        return []
    points: dict[int, float] = {}
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    epoch, value = int(row["epoch"]), float(row["val_parzen_ll"])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    points[epoch] = value
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return sorted(points.items())


def _is_run_folder(folder: Path) -> bool:
    return (folder / CONFIG).is_file() or (folder / "results.json").is_file()


def load_run(run_dir: Path) -> tuple[RunRecord | None, str]:
    """(record, "") for a finished run folder, or (None, why it is skipped). A folder with a ``results.json`` but
    no Hydra record has an empty config and the overrides its results recorded."""
    config: Any = {}
    if (run_dir / CONFIG).is_file():
        try:
            config = yaml.safe_load((run_dir / CONFIG).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            return None, f"unreadable {CONFIG} ({err})"
    if not isinstance(config, dict):
        return None, f"{CONFIG} does not hold a config"
    overrides: list[str] = []
    if (run_dir / OVERRIDES).is_file():
        try:
            loaded = yaml.safe_load((run_dir / OVERRIDES).read_text()) or []
            overrides = [str(o) for o in loaded] if isinstance(loaded, list) else []
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            overrides = []
    results, why_results = _read_json(run_dir / "results.json")
    metrics, why_metrics = _read_json(run_dir / "metrics.json")
    if why_results or why_metrics:
        return None, why_results or why_metrics
    if results is not None and not (run_dir / OVERRIDES).is_file():
        recorded = results.get("overrides")
        overrides = [str(o) for o in recorded] if isinstance(recorded, list) else []
    curve = read_curve(run_dir / "val_curve.csv")
    if results is None and metrics is None:
        progress = f"validation curve up to epoch {curve[-1][0]}" if curve else "no validation point yet"
        return (
            None,
            f"half-finished run: no results.json or metrics.json (still running, killed or crashed; {progress})",
        )
    return RunRecord(run_dir, config, overrides, results, metrics, curve), ""


def _run_dirs_below(folder: Path) -> list[Path]:
    """Every run folder at or below ``folder`` (a run folder's own subfolders are not searched)."""
    found: list[Path] = []
    for root, dirs, _files in os.walk(folder):
        here = Path(root)
        if _is_run_folder(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _NOT_RUNS)
    return found


def run_folders(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The run folders given (or named by a ``results.json`` / ``metrics.json`` in them) or found below the given
    folders (searched recursively, a run folder's own subfolders not), each once, in the order found; and what
    was skipped with the reason: a missing path, a file that is not a run's, a folder without runs."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            skipped.append((path, "does not exist"))
            continue
        if path.is_file():
            if path.name in ("results.json", "metrics.json") and _is_run_folder(path.parent):
                path = path.parent
            else:
                skipped.append((path, "not a run folder (give run folders or folders that hold them)"))
                continue
        below = _run_dirs_below(path)
        if not below:
            empty = not any(path.iterdir())
            why = "no run folders in it (none has .hydra/config.yaml or results.json)"
            skipped.append((path, "empty folder" if empty else why))
        for run_dir in below:
            if run_dir.resolve() not in seen:
                seen.add(run_dir.resolve())
                found.append(run_dir)
    return found, skipped


def find_runs(paths: Sequence[Path]) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Finished runs in the ``run_folders`` of ``paths``, and what was skipped with the reason (as there, and a
    half-finished run, a run whose files cannot be read). Each run is read once; records come sorted by path."""
    folders, skipped = run_folders(paths)
    records: list[RunRecord] = []
    for run_dir in folders:
        record, why = load_run(run_dir)
        if record is None:
            skipped.append((run_dir, why))
        else:
            records.append(record)
    return sorted(records, key=lambda r: str(r.path)), skipped


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``{key: value}`` from Hydra override strings (``a.b=1``, ``+x=y``, ``~z``), values normalised by Hydra's
    own parser so ``lr=1e-3`` and ``lr=0.001`` agree; a later override of the same key wins."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out: dict[str, Any] = {}
    for text in overrides:
        try:
            override = parser.parse_override(text)
            key = override.get_key_element().lstrip("+~")
            value: Any = None if override.is_delete() else override.value()
            out[key] = value if isinstance(value, str | int | float | bool) or value is None else repr(value)
        except Exception:  # anything Hydra's grammar does not take: keep the raw text
            key, _, value = text.partition("=")
            out[key.lstrip("+~")] = value
    return out


# evaluation settings that change what results.json holds (the seed of the samples excluded: seeds are averaged)
EVAL_KEYS = ("n_samples", "n_valid", "grid", "precision")


def eval_settings(results: dict | None) -> dict[str, Any]:
    """The evaluation protocol a ``results.json`` was computed with: the Parzen settings, a fixed sigma if one was
    given, and the protocol of the metrics beyond Parzen (None when it has none). Runs whose settings differ are
    never averaged into one row by advnets-report / advnets-compare."""
    if not results:
        return {}
    given = results.get("eval") or {}
    settings = {k: results.get(k, given.get(k)) for k in EVAL_KEYS}
    settings["fixed_sigma"] = given.get("sigma")
    protocol = dict(results.get("metrics_protocol") or {})
    protocol.pop("seed", None)
    # a metric of one's own adds a column and changes none of the others: not part of the protocol
    own = protocol.pop("own_metrics", None) or {}
    if isinstance(protocol.get("higher_is_better"), dict):
        protocol["higher_is_better"] = {k: v for k, v in protocol["higher_is_better"].items() if k not in own}
    settings["metrics"] = None if not protocol else "on"
    settings.update(flat_keys(protocol, "metrics."))
    return settings


def flat_keys(tree: dict, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """A nested dict's leaves under their joined keys (``sep="/"``: as Lightning's loggers name hyper-parameters;
    lists are values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}{sep}", sep))
        else:
            out[f"{prefix}{key}"] = value
    return out


def eval_signature(results: dict | None) -> str:
    """``eval_settings`` as one comparable string."""
    return json.dumps(eval_settings(results), sort_keys=True, default=str)


def describe_eval(settings: dict[str, Any], others: Sequence[dict[str, Any]]) -> str:
    """The settings of ``settings`` that differ among ``others`` (all runs of a table), as ``eval: k=v, ...``."""
    keys = [k for k in settings if len({json.dumps(o.get(k), sort_keys=True, default=str) for o in others}) > 1]
    if "metrics" in keys:  # with metrics on one side and none on the other, their details say nothing more
        keys = [k for k in keys if not k.startswith("metrics.")]
    return "eval: " + ", ".join(f"{k}={settings.get(k)}" for k in keys) if keys else ""
