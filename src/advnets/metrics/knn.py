"""k-nearest-neighbour manifold metrics on features, as torchmetrics ``Metric``s with DDP-correct states.

- improved precision / recall (Kynkaanniemi et al. 2019): a point is "inside" a set when it lies within the
  distance of some member to that member's k-th nearest neighbour (its k-NN ball);
- density / coverage (Naeem et al. 2020): density counts the real k-NN balls holding each sample (/ k), coverage
  is the share of real points whose ball holds at least one sample.

Every rank keeps the features it saw; the states are concatenated across ranks (``dist_reduce_fx="cat"``), so
``compute`` sees the whole sets, exactly as a single process would. Distances are Euclidean, in float64, in row
blocks (no N x M matrix is kept).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from advnets.errors import UserError

BLOCK_ROWS = 1024


def pairwise_distance_blocks(a: Tensor, b: Tensor, rows: int = BLOCK_ROWS):
    """(row offset, Euclidean distances ``[rows, len(b)]``) of ``a`` to ``b``, block by block, in float64."""
    a, b = a.double(), b.double()
    b2 = b.pow(2).sum(1)
    for r0 in range(0, len(a), rows):
        x = a[r0 : r0 + rows]
        d2 = x.pow(2).sum(1, keepdim=True) + b2 - 2.0 * x @ b.T
        yield r0, d2.clamp_min_(0.0).sqrt_()


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance of each point of ``x`` to its k-th nearest other point of ``x``."""
    if len(x) <= k:
        raise UserError(f"k-NN metrics need more than k={k} points per set; got {len(x)}")
    radii = torch.empty(len(x), dtype=torch.float64, device=x.device)
    for r0, d in pairwise_distance_blocks(x, x):
        radii[r0 : r0 + len(d)] = d.topk(k + 1, dim=1, largest=False).values[:, -1]  # +1: the point itself
    return radii


class _FeatureSets(Metric):
    """Real and fake features (through an optional frozen ``feature`` module), gathered across ranks."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise UserError(f"k={k}; allowed: a positive integer")
        self.k, self.feature = k, feature
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor, real: bool) -> None:
        features = self.feature(x) if self.feature is not None else x
        if features.dim() != 2:
            raise UserError(f"features must be [N, D]; got shape {tuple(features.shape)}")
        (self.real if real else self.fake).append(features.detach().float())

    def _sets(self) -> tuple[Tensor, Tensor]:
        if _empty(self.real) or _empty(self.fake):
            raise UserError("k-NN metrics need both real and fake features (call update with real=True and False)")
        return dim_zero_cat(self.real), dim_zero_cat(self.fake)


def _empty(state: list[Tensor] | Tensor) -> bool:
    """A list state is a list before a DDP sync and one tensor after it."""
    return len(state) == 0


class ImprovedPrecisionRecall(_FeatureSets):
    """Precision: share of fake points inside the real k-NN balls; recall: share of real inside the fake balls."""

    def __init__(self, k: int = 3, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(k, feature, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        real, fake = self._sets()
        real_r, fake_r = knn_radii(real, self.k), knn_radii(fake, self.k)
        fake_in = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
        real_in = torch.empty(len(real), dtype=torch.bool, device=real.device)
        for r0, d in pairwise_distance_blocks(real, fake):
            fake_in |= (d < real_r[r0 : r0 + len(d), None]).any(0)
            real_in[r0 : r0 + len(d)] = (d < fake_r[None, :]).any(1)
        return {"precision": fake_in.double().mean(), "recall": real_in.double().mean()}


class DensityCoverage(_FeatureSets):
    """Density: mean number of real k-NN balls holding a fake point, / k; coverage: share of real balls with one."""

    def __init__(self, k: int = 5, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(k, feature, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        real, fake = self._sets()
        real_r = knn_radii(real, self.k)
        counts = torch.zeros(len(fake), dtype=torch.float64, device=fake.device)
        covered = torch.empty(len(real), dtype=torch.bool, device=real.device)
        for r0, d in pairwise_distance_blocks(real, fake):
            inside = d < real_r[r0 : r0 + len(d), None]
            counts += inside.sum(0)
            covered[r0 : r0 + len(d)] = inside.any(1)
        return {"density": counts.mean() / self.k, "coverage": covered.double().mean()}
