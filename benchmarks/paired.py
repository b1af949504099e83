"""Paired rounds: each round times the baseline once and every other setting beside it, so a ratio compares
timings taken under the same load of a shared, noisy machine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def paired_rounds(
    settings: Mapping[str, T], baseline: str, time_one: Callable[[str, T], float], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``(times, ratios)`` per setting name over ``repeats`` rounds; ``time_one(name, setting)`` times one."""
    times: dict[str, list[float]] = {name: [] for name in settings}
    ratios: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        base = time_one(baseline, settings[baseline])
        for name, setting in settings.items():
            took = base if name == baseline else time_one(name, setting)
            times[name].append(took)
            ratios[name].append(took / base)
    return times, ratios
