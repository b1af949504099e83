"""k-nearest-neighbour manifold metrics on features, as torchmetrics ``Metric``s with DDP-correct states.

- improved precision / recall (Kynkaanniemi et al. 2019): a point is "inside" a set when it lies within the
  distance of some member to that member's k-th nearest neighbour (its k-NN ball);
- density / coverage (Naeem et al. 2020): density counts the real k-NN balls holding each sample (/ k), coverage
  is the share of real points whose ball holds at least one sample.

Every rank keeps the features it saw; the states are concatenated across ranks (``dist_reduce_fx="cat"``), so
``compute`` sees the whole sets, exactly as a single process would. Distances are Euclidean, in row
blocks (no N x M matrix is kept), compared as squared float32 distances.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from advnets.errors import UserError

BLOCK_ROWS = 1024


def pairwise_sq_distance_blocks(a: Tensor, b: Tensor, rows: int = BLOCK_ROWS):
    """(row offset, squared Euclidean distances ``[rows, len(b)]``) of ``a`` to ``b``, block by block, in float32
    (as the ``prdc`` reference computes them; comparisons on squared distances need no square root)."""
    a, b = a.float(), b.float()
    b2 = b.pow(2).sum(1)[None, :]
    for r0 in range(0, len(a), rows):
        x = a[r0 : r0 + rows]
        d2 = torch.addmm(b2, x, b.T, alpha=-2.0).add_(x.pow(2).sum(1, keepdim=True))
        yield r0, d2.clamp_min_(0.0)


def knn_sq_radii(x: Tensor, ks: list[int]) -> list[Tensor]:
    """For each k of ``ks``: the squared distance of each point of ``x`` to its k-th nearest other point."""
    if len(x) <= max(ks):
        raise UserError(f"k-NN metrics need more than k={max(ks)} points per set; got {len(x)}")
    radii = torch.empty(len(ks), len(x), dtype=torch.float32, device=x.device)
    for r0, d in pairwise_sq_distance_blocks(x, x):
        nearest = d.topk(max(ks) + 1, dim=1, largest=False, sorted=True).values  # +1: the point itself
        for i, k in enumerate(ks):
            radii[i, r0 : r0 + len(d)] = nearest[:, k]
    return list(radii)


class _FeatureSets(Metric):
    """Real and fake features (through an optional frozen ``feature`` module), gathered across ranks."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
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


class ManifoldMetrics(_FeatureSets):
    """Improved precision/recall (k = ``pr_k``) and density/coverage (k = ``dc_k``) in one pass over the
    distances: the real radii for both k from one top-k, the fake radii once, the real x fake distances once."""

    def __init__(self, pr_k: int | None = 3, dc_k: int | None = 5, feature: nn.Module | None = None, **kwargs) -> None:
        ks = [k for k in (pr_k, dc_k) if k is not None]
        if not ks:
            raise UserError("ManifoldMetrics needs pr_k or dc_k")
        super().__init__(max(ks), feature, **kwargs)
        for k in ks:
            if k < 1:
                raise UserError(f"k={k}; allowed: a positive integer")
        self.pr_k, self.dc_k = pr_k, dc_k

    def compute(self) -> dict[str, Tensor]:
        real, fake = self._sets()
        ks = sorted({k for k in (self.pr_k, self.dc_k) if k is not None})
        real_r = dict(zip(ks, knn_sq_radii(real, ks), strict=True))
        out: dict[str, Tensor] = {}
        if self.pr_k is not None:
            (fake_r,) = knn_sq_radii(fake, [self.pr_k])
            fake_in = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
            real_in = torch.empty(len(real), dtype=torch.bool, device=real.device)
        if self.dc_k is not None:
            counts = torch.zeros(len(fake), dtype=torch.float64, device=fake.device)
            covered = torch.empty(len(real), dtype=torch.bool, device=real.device)
        for r0, d in pairwise_sq_distance_blocks(real, fake):
            rows = slice(r0, r0 + len(d))
            if self.pr_k is not None:
                fake_in |= (d < real_r[self.pr_k][rows, None]).any(0)
                real_in[rows] = (d < fake_r[None, :]).any(1)
            if self.dc_k is not None:
                inside = d < real_r[self.dc_k][rows, None]
                counts += inside.sum(0)
                covered[rows] = inside.any(1)
        if self.pr_k is not None:
            out.update(precision=fake_in.double().mean(), recall=real_in.double().mean())
        if self.dc_k is not None:
            out.update(density=counts.mean() / self.dc_k, coverage=covered.double().mean())
        return out


class ImprovedPrecisionRecall(ManifoldMetrics):
    """Precision: share of fake points inside the real k-NN balls; recall: share of real inside the fake balls."""

    def __init__(self, k: int = 3, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(pr_k=k, dc_k=None, feature=feature, **kwargs)


class DensityCoverage(ManifoldMetrics):
    """Density: mean number of real k-NN balls holding a fake point, / k; coverage: share of real balls with one."""

    def __init__(self, k: int = 5, feature: nn.Module | None = None, **kwargs) -> None:
        super().__init__(pr_k=None, dc_k=k, feature=feature, **kwargs)
