"""The choices and ranges of settings, in one place that imports nothing heavy: ``AdversarialGame``'s signature, the
noise sampler and the nets' signatures are annotated with them, and the config schema reads them (from the source,
before torch is imported, and again from the imported class)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``Annotated[int, Range(ge=1)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None


@dataclass(frozen=True)
class MinLen:
    """The fewest items of a list: ``Annotated[Sequence[int], MinLen(1)]``."""

    n: int


Update = Literal["joint", "alternating"]
GLoss = Literal["non_saturating", "minimax"]
Noise = Literal["uniform", "gaussian"]
CompileMode = Literal["none", "default", "reduce-overhead"]

Positive = Annotated[int, Range(ge=1)]
PositiveFloat = Annotated[float, Range(gt=0)]
Probability = Annotated[float, Range(gt=0, le=1)]
Widths = Annotated[Sequence[Positive], MinLen(1)]  # one width per layer, at least one layer
Activation = Literal["relu", "sigmoid"]
OutputActivation = Literal["sigmoid", "linear"]


def r1_with_compile(r1_gamma: float, compile: str) -> str | None:
    """Why R1 (``loss.r1_gamma`` > 0) cannot run with ``game.compile``, or None: one line for the user."""
    if r1_gamma > 0 and compile != "none":
        return (
            f"loss.r1_gamma={r1_gamma:g} with game.compile={compile}; allowed: game.compile=none "
            "(torch.compile does not differentiate twice, which R1 needs)"
        )
    return None
