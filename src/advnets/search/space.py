"""An Optuna search space from Hydra's sweep syntax: ``choice()`` -> categorical, ``range()`` -> a stepped int or
float (its stop excluded, as Hydra's range excludes it), ``interval()`` -> a uniform int or float, with
``tag(log, ...)`` on a log scale; an override that sweeps nothing is a fixed value every trial gets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _last(start: float, stop: float, step: float) -> float:
    """The last value of Hydra's ``range(start, stop, step)`` (stop excluded)."""
    count = max(1, -(-(stop - start) // step))
    return start + step * (count - 1)


def distribution(override: Any) -> Any:
    """The Optuna distribution of one sweep override."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep) or (isinstance(sweep, RangeSweep) and sweep.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(sweep, RangeSweep):
        step = sweep.step or 1
        last = _last(sweep.start, sweep.stop, step)
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, step)):
            return IntDistribution(int(sweep.start), int(last), step=int(step))
        return FloatDistribution(float(sweep.start), float(last), step=float(step))
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ValueError(f"{override.input_line}: not an Optuna search (allowed: choice, range, interval)")


def search_space(arguments: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(distributions, fixed)`` of the swept and the fixed overrides among ``arguments`` (later ones win)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    distributions: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return distributions, fixed


def grid(distributions: dict[str, Any]) -> dict[str, list[Any]]:
    """Every value of each distribution, for ``GridSampler``; an interval (no step) has no grid."""
    from optuna.distributions import CategoricalDistribution

    values: dict[str, list[Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = list(dist.choices)
        elif getattr(dist, "step", None) is not None:
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            values[name] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ValueError(
                f"{name}: an interval has no grid; allowed with hydra/sweeper/sampler=grid: choice() or range()"
            )
    return values
