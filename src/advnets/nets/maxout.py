"""The paper's maxout discriminator with masked (inverted) dropout.

A plain ``nn.Module``; sizes, pieces, dropout and init ranges come from the config (``conf/model/``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advnets.choices import Positive, PositiveFloat, Probability, Widths
from advnets.errors import UserError


class Maxout(nn.Module):
    """A linear map to ``units * pieces`` outputs followed by the max over each unit's pieces."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=-1)


class Discriminator(nn.Module):
    """x -> dropout -> maxout layers (dropout on each next layer's input) -> one logit.

    Dropout is inverted dropout with explicit masks, so that one mask can be shared by the D loss and the
    G loss of the paper's joint update (see ``masks()`` and ``forward(x, masks)``).
    """

    def __init__(
        self,
        data_dim: Positive,
        units: Widths,
        pieces: Positive,
        init_range: PositiveFloat,
        input_keep: Probability,
        hidden_keep: Probability,
    ) -> None:
        super().__init__()
        for name, keep in (("input_keep", input_keep), ("hidden_keep", hidden_keep)):
            if not 0.0 < keep <= 1.0:
                raise UserError(f"model.discriminator.{name}={keep}; allowed: 0 < keep <= 1")
        self.layers = nn.ModuleList()
        width = data_dim
        for n in units:
            self.layers.append(Maxout(width, n, pieces))
            width = n
        self.out = nn.Linear(width, 1)
        self.keeps = [input_keep] + [hidden_keep] * len(units)
        self.widths = [data_dim, *units]
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    def masks(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor | None]:
        """Inverted-dropout masks (0 or 1/keep) for the input of every layer; None where keep == 1."""
        device = self.out.weight.device
        masks: list[Tensor | None] = []
        for keep, width in zip(self.keeps, self.widths, strict=True):
            if keep >= 1.0:
                masks.append(None)
                continue
            u = torch.rand(batch, width, device=device, generator=generator)
            masks.append((u < keep).to(self.out.weight.dtype) / keep)
        return masks

    def forward(self, x: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits of shape [batch]. With ``masks=None`` no dropout is applied (evaluation)."""
        h = x
        for i, layer in enumerate(self.layers):
            if masks is not None and masks[i] is not None:
                h = h * masks[i]
            h = layer(h)
        if masks is not None and masks[-1] is not None:
            h = h * masks[-1]
        return self.out(h).squeeze(-1)
