"""What the game needs from a discriminator: dropout masks drawn apart from the forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class MaskedDropoutDiscriminator(Protocol):
    """A discriminator whose dropout masks are explicit, so one mask can serve the D loss and the G loss.

    ``masks(n, generator)`` draws inverted-dropout masks (0 or 1/keep; ``None`` where nothing is dropped) for a
    batch of ``n``; ``forward(x, masks)`` returns one logit per example, without dropout when ``masks`` is None.
    Masks for two batches concatenate along dim 0 (entry by entry) into masks for the joined batch.
    """

    def masks(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor | None]: ...

    def forward(self, x: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor: ...
