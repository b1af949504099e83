"""The one place that names each metric: its name, which way is better, its title and what computes it.

Names are ``[split/]metric``: ``val/...`` is logged during training (a monitor callback), ``test/...`` comes from
the evaluation after training, a bare name is a key of ``results.json``'s ``metrics``. The checkpoint callback
(``mode``), the Optuna sweeper (``direction``), the sweep objective, the suite (``advnets.metrics.suite``),
``advnets-compare`` and ``advnets-report`` read this registry alone (through the ``advnets_mode`` /
``advnets_direction`` config resolvers or ``spec``); a metric is one ``MetricSpec`` entry here.

A metric of one's own is added by config, with no edit to advnets: an entry of ``eval.extra_metrics`` whose
``_target_`` builds an object with ``title``, ``higher_is_better`` and ``compute`` (``Metric`` shows the shape;
``own_spec`` reads it). Its ``results.json`` records its title and direction (``recorded_specs``), so the report
and compare show it without running any code.

Nothing here imports torch: ``advnets-compare``, ``advnets-report`` and the schema read it before torch loads.
An entry names its compute function by its dotted path, imported only when the suite runs it (``compute_of``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advnets.errors import UserError

FAILED_SCORE = 1.0e6  # what a diverged run scores: finite, and worse than any real value (sign by direction)


@dataclass(frozen=True)
class MetricSpec:
    """A metric: its name, whether higher is better, its column title, one line on what it is, and its compute.

    ``compute``: the dotted path of a function ``(fake, real, settings) -> float`` (``advnets.metrics.suite``'s
    ``Extracted`` sets and ``SuiteSettings``), or such a callable (a metric of one's own); None for a metric the
    suite does not compute (the Parzen protocol's ``parzen_ll``)."""

    name: str
    higher_is_better: bool
    title: str
    description: str
    compute: str | Callable[..., float] | None = None
    logged_by: str | None = None  # the callbacks.* entry that logs its ``val/`` form during training

    @property
    def mode(self) -> str:
        """Lightning's ModelCheckpoint ``mode``."""
        return "max" if self.higher_is_better else "min"

    @property
    def direction(self) -> str:
        """Optuna's study ``direction``."""
        return "maximize" if self.higher_is_better else "minimize"

    @property
    def arrow(self) -> str:
        """Which way is better, as the tables say it."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def failed(self) -> float:
        """The finite worst score (a diverged run)."""
        return -FAILED_SCORE if self.higher_is_better else FAILED_SCORE

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


_SUITE = "advnets.metrics.suite"  # where the built-in metrics' compute functions live (imported when run)
_KNN = "Kynkaanniemi 2019"
_SPECS = (
    MetricSpec(
        "parzen_ll",
        True,
        "Parzen LL",
        "Parzen-window log-likelihood of test images, nats (the paper's)",
        None,  # the Parzen protocol (advnets.metrics.parzen), not the suite
        "parzen_monitor",
    ),
    MetricSpec(
        "fid",
        False,
        "FID",
        "Frechet distance of domain-classifier features (samples vs test images)",
        f"{_SUITE}.fid",
        "metric_monitor",
    ),
    MetricSpec(
        "kid", False, "KID", "kernel (MMD) distance of domain-classifier features", f"{_SUITE}.kid", "metric_monitor"
    ),
    MetricSpec(
        "precision",
        True,
        "precision",
        f"share of samples inside the real features' k-NN balls ({_KNN})",
        f"{_SUITE}.precision",
        "metric_monitor",
    ),
    MetricSpec(
        "recall",
        True,
        "recall",
        f"share of real images inside the samples' k-NN balls ({_KNN})",
        f"{_SUITE}.recall",
        "metric_monitor",
    ),
    MetricSpec(
        "density",
        True,
        "density",
        "mean count of real k-NN balls holding a sample, / k (Naeem 2020)",
        f"{_SUITE}.density",
        "metric_monitor",
    ),
    MetricSpec(
        "coverage",
        True,
        "coverage",
        "share of real images whose k-NN ball holds a sample (Naeem 2020)",
        f"{_SUITE}.coverage",
        "metric_monitor",
    ),
    MetricSpec(
        "inception_score",
        True,
        "IS",
        "exp E[KL(p(y|x) || p(y))] of the domain classifier's logits",
        f"{_SUITE}.inception_score",
        "metric_monitor",
    ),
    MetricSpec(
        "class_kl",
        False,
        "class KL",
        "KL(sample class shares || test class shares), classifier-labelled",
        f"{_SUITE}.class_kl",
        "metric_monitor",
    ),
    MetricSpec(
        "class_coverage",
        True,
        "classes ≥1%",
        "classes holding >= 1% of the samples, as a share of all classes",
        f"{_SUITE}.class_coverage",
        "metric_monitor",
    ),
    MetricSpec(
        "nearest_sq_dist",
        False,
        "nearest sq. dist",
        "mean squared pixel distance from a test image to its nearest sample",
        f"{_SUITE}.nearest_sq_dist",
    ),
)
METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}
SUITE = tuple(name for name, s in METRICS.items() if s.compute is not None)
"""The metrics beyond Parzen (``eval.metrics``, ``advnets.metrics.suite`` computes them), in the report's order."""
SPLITS = ("val", "test")
# how advnets-compare prefixes its per-run columns (best/last of the validation curve, the test value)
_COLUMN_PREFIXES = ("best_val_", "last_val_", "test_", "val_")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def base_name(name: str, extra: Mapping[str, MetricSpec] | None = None) -> str:
    """``val/fid`` -> ``fid``; ``best_val_parzen_ll`` -> ``parzen_ll``; ``fid`` -> ``fid`` (``extra``: metrics of
    one's own, known as well)."""
    split, _, rest = name.rpartition("/")
    if split:
        return rest
    for prefix in _COLUMN_PREFIXES:
        rest = name[len(prefix) :]
        if name.startswith(prefix) and (rest in METRICS or rest in (extra or {})):
            return rest
    return name


def spec(name: str, extra: Mapping[str, MetricSpec] | None = None) -> MetricSpec:
    """The spec of ``name`` (with or without its split), registered or among ``extra`` (metrics of one's own);
    an unknown name is a clear error."""
    known = {**(extra or {}), **METRICS}
    split = name.rpartition("/")[0]
    found = known.get(base_name(name, extra))
    if found is None or (split and split not in SPLITS):
        allowed = ", ".join(f"{s}/{m}" for s in SPLITS for m in known)
        raise UserError(f"metric {name!r} is not registered; allowed: {allowed}")
    return found


def mode(name: str) -> str:
    return spec(name).mode


def direction(name: str) -> str:
    return spec(name).direction


def higher_is_better(name: str, extra: Mapping[str, MetricSpec] | None = None) -> bool:
    return spec(name, extra).higher_is_better


def check_names(names: Sequence[str], extra: Mapping[str, MetricSpec] | None = None) -> list[str]:
    """``names`` without repeats, each a metric of ``SUITE`` or of ``extra``; an unknown one is a clear error."""
    allowed = [*SUITE, *(extra or {})]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise UserError(f"eval.metrics contains {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(names))


class Metric:
    """The shape of a metric of one's own (subclassing it is optional: any object with these attributes does).

    ``eval.extra_metrics.NAME._target_`` builds it; NAME is its name in ``results.json``, the report and compare.
    ``compute(fake, real, settings)`` gets the samples and the test images through the dataset's domain classifier
    (``advnets.metrics.suite.Extracted``: ``features``, ``logits``, flat ``pixels`` in [0, 1]) and the suite's
    ``SuiteSettings``, and returns one number."""

    title: str = ""
    higher_is_better: bool = False
    description: str = ""

    def compute(self, fake: Any, real: Any, settings: Any) -> float:
        raise NotImplementedError(f"{type(self).__name__}.compute(fake, real, settings) -> float")


def own_spec(name: str, metric: Any, target: str = "") -> MetricSpec:
    """The registry entry of a metric of one's own: ``name`` (its key in ``eval.extra_metrics``) and the object
    its ``_target_`` built; a name that is taken or malformed, or a missing attribute, is one clear error."""
    where = f"eval.extra_metrics.{name}"
    if name in METRICS:
        raise UserError(f"{where}: {name} is advnets' own metric; give yours another name (not {', '.join(METRICS)})")
    if not _NAME.fullmatch(name):
        raise UserError(f"{where}: a metric's name is lower-case letters, digits and _, starting with a letter")
    title, better = getattr(metric, "title", None), getattr(metric, "higher_is_better", None)
    described = getattr(metric, "description", "") or ""
    compute = getattr(metric, "compute", None)
    kind = target or type(metric).__name__
    if not isinstance(title, str) or not title.strip():
        raise UserError(f"{where}: {kind} has no title (a str attribute: its column title in report and compare)")
    if not isinstance(better, bool):
        raise UserError(f"{where}: {kind}.higher_is_better is {better!r}; allowed: true or false")
    if not callable(compute):
        raise UserError(f"{where}: {kind} has no compute(fake, real, settings) -> float method")
    if not isinstance(described, str):
        raise UserError(f"{where}: {kind}.description is {described!r}; allowed: one line of text")
    return MetricSpec(name, better, title.strip(), described, compute)


def recorded(specs: Mapping[str, MetricSpec]) -> dict[str, dict[str, Any]]:
    """What ``results.json`` keeps of metrics of one's own (``metrics_protocol.own_metrics``): title, direction,
    description, so reading it back runs no code."""
    return {
        s.name: {"title": s.title, "higher_is_better": s.higher_is_better, "description": s.description}
        for s in specs.values()
    }


def recorded_specs(results: Mapping[str, Any] | None) -> dict[str, MetricSpec]:
    """The specs of the metrics of one's own a ``results.json`` holds, from what it recorded (plain data: nothing
    is imported or run); registered names and malformed entries are left to the registry."""
    protocol = (results or {}).get("metrics_protocol") or {}
    own = protocol.get("own_metrics") if isinstance(protocol, Mapping) else None
    found: dict[str, MetricSpec] = {}
    for name, entry in (own or {}).items() if isinstance(own, Mapping) else ():
        if name in METRICS or not isinstance(entry, Mapping) or not _NAME.fullmatch(str(name)):
            continue
        title, better = entry.get("title"), entry.get("higher_is_better")
        if isinstance(title, str) and title and isinstance(better, bool):
            found[str(name)] = MetricSpec(str(name), better, title, str(entry.get("description") or ""))
    return found


def shown(results: Sequence[Mapping[str, Any]]) -> dict[str, MetricSpec]:
    """The metrics beyond Parzen that ``results`` (``results.json`` contents) hold, as report and compare show them:
    the registry's in its order, then those of one's own they recorded, in the order first met."""
    held = {n for r in results for n in (r.get("metrics") or {})}
    extra: dict[str, MetricSpec] = {}
    for r in results:
        for name, found in recorded_specs(r).items():
            extra.setdefault(name, found)
    ordered = [METRICS[n] for n in SUITE if n in held] + [s for n, s in extra.items() if n in held]
    return {s.name: s for s in ordered}


def compute_of(metric: MetricSpec) -> Callable[..., float]:
    """The function that computes ``metric``: its callable, or the one its dotted path names (imported now)."""
    if metric.compute is None:
        raise UserError(f"{metric.name} is not computed by the metric suite; allowed: {', '.join(SUITE)}")
    if callable(metric.compute):
        return metric.compute
    from advnets.internals import locate

    return locate(metric.compute)
