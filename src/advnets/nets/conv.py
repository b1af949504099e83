"""The released CIFAR-10 convolutional nets (``cifar10_convolutional.yaml``): a "deconvolutional" generator and a
maxout-convolution discriminator with masked dropout.

Both read and write flat pixel rows (like the fully connected nets), reshaping to ``image_shape`` inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from advnets.choices import Activation, Positive, PositiveFloat, Probability, Widths
from advnets.errors import UserError
from advnets.nets.maxout import Maxout
from advnets.nets.mlp import hidden_stack


class DeconvGenerator(nn.Module):
    """z -> fully connected hidden layers -> reshape to [channels, side, side] -> one transposed convolution.

    pylearn2's ``Deconv`` (``adversarial/deconv.py``) is the transpose of a convolution with stride
    ``stride`` and no padding: output side = stride * (side - 1) + kernel; its bias is untied (one per output
    pixel and channel, ``tied_b: 0``) and its output linear.
    """

    def __init__(
        self,
        noise_dim: Positive,
        hidden: Widths,
        hidden_activation: Activation | Sequence[Activation],
        channels: Positive,
        side: Positive,
        image_shape: Sequence[Positive],
        kernel: Positive,
        stride: Positive,
        init_range: PositiveFloat,
    ) -> None:
        super().__init__()
        if channels * side * side != hidden[-1]:
            raise UserError(f"model.generator: channels*side*side = {channels * side * side}; must be {hidden[-1]}")
        out_c, out_h, out_w = image_shape
        if stride * (side - 1) + kernel != out_h or out_h != out_w:
            raise UserError(
                f"model.generator: a {kernel}x{kernel} stride-{stride} transposed convolution of {side}x{side} "
                f"gives {stride * (side - 1) + kernel}x{stride * (side - 1) + kernel}, not {out_h}x{out_w}"
            )
        self.noise_dim, self.data_dim = noise_dim, out_c * out_h * out_w
        self.channels, self.side = channels, side
        self.body = hidden_stack(noise_dim, hidden, hidden_activation)
        self.deconv = nn.ConvTranspose2d(channels, out_c, kernel, stride=stride, bias=False)
        self.deconv_bias = nn.Parameter(torch.zeros(out_c, out_h, out_w))  # untied: one per output unit
        for module in [*self.body, self.deconv]:
            if isinstance(module, nn.Linear | nn.ConvTranspose2d):
                nn.init.uniform_(module.weight, -init_range, init_range)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def init_output_bias(self, pixel_mean: Tensor) -> None:
        """Not for this net: its output is linear (the released yaml leaves the bias at 0)."""
        raise UserError("model.output_bias_from_data=true needs a sigmoid output; this generator's output is linear")

    def forward(self, z: Tensor) -> Tensor:
        h = self.body(z).view(z.shape[0], self.channels, self.side, self.side)
        return (self.deconv(h) + self.deconv_bias).flatten(1)


class MaxoutConv(nn.Module):
    """pylearn2's ``MaxoutConvC01B``: convolution (tied bias) -> max over each unit's pieces -> max pooling.

    Pooling follows cuda-convnet: windows start at 0 and the last one may hang over the edge (``ceil_mode``).
    Max over pieces and max over a window commute, so their order does not matter.
    """

    def __init__(
        self, in_channels: int, channels: int, pieces: int, kernel: int, pad: int, pool: int, pool_stride: int
    ) -> None:
        super().__init__()
        self.channels, self.pieces = channels, pieces
        self.conv = nn.Conv2d(in_channels, channels * pieces, kernel, padding=pad)
        self.pool = nn.MaxPool2d(pool, pool_stride, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        n, _, height, width = h.shape
        h = h.view(n, self.channels, self.pieces, height, width).amax(dim=2)
        return self.pool(h)


class MaxoutConvDiscriminator(nn.Module):
    """x -> dropout -> maxout-conv layers -> fully connected maxout layers -> one logit; dropout before each layer.

    ``conv`` lists the convolutional layers as mappings with channels, pieces, kernel, pad, pool, pool_stride.
    Dropout masks cover every element of each layer's input (as pylearn2's dropout does), drawn by ``masks``.
    """

    def __init__(
        self,
        image_shape: Sequence[Positive],
        conv: Sequence[Mapping[str, int]],
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
        self.image_shape = tuple(image_shape)
        self.convs = nn.ModuleList()
        channels = self.image_shape[0]
        for spec in conv:
            self.convs.append(
                MaxoutConv(
                    channels,
                    spec["channels"],
                    spec["pieces"],
                    spec["kernel"],
                    spec["pad"],
                    spec["pool"],
                    spec["pool_stride"],
                )
            )
            channels = spec["channels"]
        shapes = [self.image_shape]
        with torch.no_grad():
            h = torch.zeros(1, *self.image_shape)
            for layer in self.convs:
                h = layer(h)
                shapes.append(tuple(h.shape[1:]))
        width = h.numel()
        self.layers = nn.ModuleList()
        for n in units:
            self.layers.append(Maxout(width, n, pieces))
            shapes.append((width,))
            width = n
        shapes.append((width,))
        self.out = nn.Linear(width, 1)
        self.input_shapes = shapes[: len(self.convs)] + shapes[len(self.convs) + 1 :]
        self.keeps = [input_keep] + [hidden_keep] * (len(self.input_shapes) - 1)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    def masks(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor | None]:
        """Inverted-dropout masks (0 or 1/keep) for the input of every layer; None where keep == 1."""
        device, dtype = self.out.weight.device, self.out.weight.dtype
        masks: list[Tensor | None] = []
        for keep, shape in zip(self.keeps, self.input_shapes, strict=True):
            if keep >= 1.0:
                masks.append(None)
                continue
            u = torch.rand(batch, *shape, device=device, generator=generator)
            masks.append((u < keep).to(dtype) / keep)
        return masks

    def forward(self, x: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits of shape [batch] for flat pixel rows. With ``masks=None`` no dropout is applied (evaluation)."""
        h = x.view(x.shape[0], *self.image_shape)
        layers = [*self.convs, *self.layers, self.out]
        for i, layer in enumerate(layers):
            if i == len(self.convs):
                h = h.flatten(1)
            if masks is not None and masks[i] is not None:
                h = h * masks[i]
            h = layer(h)
        return h.squeeze(-1)
