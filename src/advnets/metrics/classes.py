"""What a domain classifier says about samples: class shares, class coverage and their KL to the test set's,
and the mean squared distance from each test image to its nearest sample (a pixel-space coverage measure)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from advnets.errors import UserError
from advnets.metrics.distances import nearest_neighbours

MIN_SHARE = 0.01  # a class is covered when it holds at least 1% of the samples


class ClassShares(Metric):
    """Counts of classifier-predicted classes for samples (fake) and the test set (real); DDP sums the counts.

    ``compute``: ``class_kl`` = KL(sample shares || test shares) in nats, ``class_coverage`` = share of classes
    holding >= 1% of the samples, and ``shares`` = the samples' class shares."""

    full_state_update = False

    def __init__(self, logits: nn.Module, n_classes: int, min_share: float = MIN_SHARE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.logits, self.n_classes, self.min_share = logits, n_classes, min_share
        self.add_state("fake_counts", torch.zeros(n_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real_counts", torch.zeros(n_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: Tensor, real: bool) -> None:
        labels = self.logits(x).argmax(1)
        counts = torch.bincount(labels, minlength=self.n_classes).double()
        if real:
            self.real_counts += counts
        else:
            self.fake_counts += counts

    def compute(self) -> dict[str, Tensor]:
        if self.fake_counts.sum() == 0 or self.real_counts.sum() == 0:
            raise UserError("class shares need both samples and test images (update with real=False and True)")
        p = self.fake_counts / self.fake_counts.sum()
        q = self.real_counts / self.real_counts.sum()
        kl = torch.where(p > 0, p * (p.log() - q.clamp_min(1e-12).log()), torch.zeros_like(p)).sum()
        coverage = (p >= self.min_share).double().mean()
        return {"class_kl": kl, "class_coverage": coverage, "shares": p}


class NearestSampleDistance(Metric):
    """Mean over query (test) images of the squared pixel distance to the nearest sample; both sets gathered."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("samples", default=[], dist_reduce_fx="cat")
        self.add_state("queries", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor, real: bool) -> None:
        (self.queries if real else self.samples).append(x.detach().reshape(len(x), -1).float())

    def compute(self) -> Tensor:
        if len(self.samples) == 0 or len(self.queries) == 0:
            raise UserError("the nearest-sample distance needs samples and test images")
        # float32 search, then the exact float64 distance to the neighbour found
        _, dist = nearest_neighbours(dim_zero_cat(self.queries), dim_zero_cat(self.samples), precision="float32")
        return dist.pow(2).mean()
