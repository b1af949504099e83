"""The paper's fully connected generators: z -> ReLU/sigmoid hidden layers -> pixels (sigmoid or linear).

A plain ``nn.Module``; sizes, activations and init come from the config (``conf/model/``), following the
released yamls (pylearn2 ``RectifiedLinear`` / ``Sigmoid`` / ``Linear`` layers with ``irange``, ``init_bias``,
``sparse_init``).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advnets.choices import Activation, OutputActivation, Positive, PositiveFloat, Widths
from advnets.errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
OUTPUTS = typing.get_args(OutputActivation)


def _per_layer(value: object, n: int, key: str) -> list:
    """A single value for every hidden layer, or one per layer."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n
    if len(values) != n:
        raise UserError(f"model.generator.{key}={values}; allowed: one value, or one per hidden layer ({n})")
    return values


def hidden_stack(noise_dim: int, hidden: Sequence[int], activation: str | Sequence[str]) -> nn.Sequential:
    """z -> one Linear + activation per hidden layer (``activation``: one name, or one per layer)."""
    kinds = _per_layer(activation, len(hidden), "hidden_activation")
    for kind in kinds:
        if kind not in ACTIVATIONS:
            raise UserError(f"model.generator.hidden_activation={kind!r}; allowed: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = noise_dim
    for units, kind in zip(hidden, kinds, strict=True):
        layers += [nn.Linear(width, units), ACTIVATIONS[kind]()]
        width = units
    return nn.Sequential(*layers)


@torch.no_grad()
def sparse_init_(weight: Tensor, nonzero: int, generator: torch.Generator | None = None) -> None:
    """pylearn2's ``sparse_init``: each output unit gets ``nonzero`` distinct random inputs with N(0, 1) weights."""
    out_features, in_features = weight.shape
    if not 0 < nonzero <= in_features:
        raise UserError(f"model.generator.output_sparse_init={nonzero}; allowed: 1..{in_features}")
    weight.zero_()
    for row in range(out_features):
        idx = torch.randperm(in_features, generator=generator)[:nonzero]
        weight[row, idx] = torch.randn(nonzero, generator=generator)


class Generator(nn.Module):
    """z -> hidden layers -> pixels; a sigmoid output's bias can start at the logit of the mean image.

    ``hidden_activation`` and ``hidden_init_bias`` are one value or one per hidden layer. Weights are
    U(-init_range, init_range) (the output layer's ``output_init_range`` when given), or, for the output layer,
    pylearn2's ``sparse_init`` when ``output_sparse_init`` is set.
    """

    def __init__(
        self,
        noise_dim: Positive,
        hidden: Widths,
        data_dim: Positive,
        init_range: PositiveFloat,
        hidden_activation: Activation | Sequence[Activation] = "relu",
        hidden_init_bias: float | Sequence[float] = 0.0,
        output_activation: OutputActivation = "sigmoid",
        output_init_range: PositiveFloat | None = None,
        output_sparse_init: Positive | None = None,
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUTS:
            raise UserError(f"model.generator.output_activation={output_activation!r}; allowed: {', '.join(OUTPUTS)}")
        biases = _per_layer(hidden_init_bias, len(hidden), "hidden_init_bias")
        self.noise_dim, self.data_dim, self.output_activation = noise_dim, data_dim, output_activation
        self.body = hidden_stack(noise_dim, hidden, hidden_activation)
        self.out = nn.Linear(hidden[-1] if hidden else noise_dim, data_dim)
        hidden_linears = [m for m in self.body if isinstance(m, nn.Linear)]
        for module, bias in zip(hidden_linears, biases, strict=True):
            nn.init.uniform_(module.weight, -init_range, init_range)
            nn.init.constant_(module.bias, bias)
        if output_sparse_init is not None:
            sparse_init_(self.out.weight, output_sparse_init)
        else:
            out_range = init_range if output_init_range is None else output_init_range
            nn.init.uniform_(self.out.weight, -out_range, out_range)
        nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: Tensor, eps: float = 1e-7) -> None:
        """Set the output bias to logit(clip(mean)), so an untrained G already draws the mean image."""
        if self.output_activation != "sigmoid":
            raise UserError("model.output_bias_from_data=true needs model.generator.output_activation=sigmoid")
        p = pixel_mean.to(self.out.bias).clamp(eps, 1 - eps)
        self.out.bias.copy_(torch.log(p) - torch.log1p(-p))

    def forward(self, z: Tensor) -> Tensor:
        out = self.out(self.body(z))
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else out
