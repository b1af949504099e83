"""The paper's networks: fully connected generators, maxout discriminators (one module per family)."""

from advnets.nets.maxout import Discriminator, Maxout
from advnets.nets.mlp import Generator
from advnets.nets.protocol import MaskedDropoutDiscriminator

__all__ = ["Discriminator", "Generator", "MaskedDropoutDiscriminator", "Maxout"]
