"""The choices of the game's settings, in one place that imports nothing heavy: ``AdversarialGame``'s signature
and the noise sampler are annotated with them, and the config schema reads them before torch is imported."""

from __future__ import annotations

from typing import Literal

Update = Literal["joint", "alternating"]
GLoss = Literal["non_saturating", "minimax"]
Noise = Literal["uniform", "gaussian"]
CompileMode = Literal["none", "default", "reduce-overhead"]
