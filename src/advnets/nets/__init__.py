"""The paper's networks."""

from advnets.nets.maxout import Discriminator, Generator, Maxout

__all__ = ["Discriminator", "Generator", "Maxout"]
