"""The one place that names each metric and says which way is better.

Names are ``[split/]metric``: ``val/...`` is logged during training (a monitor callback), ``test/...`` comes from
the evaluation after training, a bare name is a key of ``results.json``'s ``metrics``. The checkpoint callback
(``mode``), the Optuna sweeper (``direction``), the sweep objective, ``advnets-compare`` and ``advnets-report``
read directions from here (through the ``advnets_mode`` / ``advnets_direction`` config resolvers or ``spec``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from advnets.errors import UserError

FAILED_SCORE = 1.0e6  # what a diverged run scores: finite, and worse than any real value (sign by direction)


@dataclass(frozen=True)
class MetricSpec:
    """A metric: its name, whether higher is better, and one line on what it is."""

    name: str
    higher_is_better: bool
    description: str
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
    def failed(self) -> float:
        """The finite worst score (a diverged run)."""
        return -FAILED_SCORE if self.higher_is_better else FAILED_SCORE

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


_SPECS = (
    MetricSpec("parzen_ll", True, "Parzen-window log-likelihood of test images, nats (the paper's)", "parzen_monitor"),
    MetricSpec(
        "fid", False, "Frechet distance of domain-classifier features (samples vs test images)", "metric_monitor"
    ),
    MetricSpec("kid", False, "kernel (MMD) distance of domain-classifier features", "metric_monitor"),
    MetricSpec(
        "precision", True, "share of samples inside the real features' k-NN balls (Kynkaanniemi 2019)", "metric_monitor"
    ),
    MetricSpec(
        "recall", True, "share of real images inside the samples' k-NN balls (Kynkaanniemi 2019)", "metric_monitor"
    ),
    MetricSpec("density", True, "mean count of real k-NN balls holding a sample, / k (Naeem 2020)", "metric_monitor"),
    MetricSpec("coverage", True, "share of real images whose k-NN ball holds a sample (Naeem 2020)", "metric_monitor"),
    MetricSpec(
        "inception_score", True, "exp E[KL(p(y|x) || p(y))] of the domain classifier's logits", "metric_monitor"
    ),
    MetricSpec(
        "class_kl", False, "KL(sample class shares || test class shares), classifier-labelled", "metric_monitor"
    ),
    MetricSpec(
        "class_coverage", True, "classes holding >= 1% of the samples, as a share of all classes", "metric_monitor"
    ),
    MetricSpec("nearest_sq_dist", False, "mean squared pixel distance from a test image to its nearest sample", None),
)
METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}
SUITE = tuple(name for name in METRICS if name != "parzen_ll")
"""The metrics beyond Parzen (``eval.metrics``, ``advnets.metrics.suite`` computes them), in the report's order."""
SPLITS = ("val", "test")
# how advnets-compare prefixes its per-run columns (best/last of the validation curve, the test value)
_COLUMN_PREFIXES = ("best_val_", "last_val_", "test_", "val_")


def base_name(name: str) -> str:
    """``val/fid`` -> ``fid``; ``best_val_parzen_ll`` -> ``parzen_ll``; ``fid`` -> ``fid``."""
    split, _, rest = name.rpartition("/")
    if split:
        return rest
    for prefix in _COLUMN_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in METRICS:
            return name[len(prefix) :]
    return name


def spec(name: str) -> MetricSpec:
    """The spec of ``name`` (with or without its split); an unknown name is a clear error."""
    split = name.rpartition("/")[0]
    found = METRICS.get(base_name(name))
    if found is None or (split and split not in SPLITS):
        allowed = ", ".join(f"{s}/{m}" for s in SPLITS for m in METRICS)
        raise UserError(f"metric {name!r} is not registered; allowed: {allowed}")
    return found


def mode(name: str) -> str:
    return spec(name).mode


def direction(name: str) -> str:
    return spec(name).direction


def higher_is_better(name: str) -> bool:
    return spec(name).higher_is_better


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, each a metric of ``SUITE``; an unknown one is a clear error."""
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise UserError(f"eval.metrics contains {', '.join(unknown)}; allowed: {', '.join(SUITE)}")
    return list(dict.fromkeys(names))
