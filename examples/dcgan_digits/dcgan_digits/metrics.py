"""A metric of one's own: how sure the domain classifier is of the samples' classes, beside the test images' own.

What advnets asks of a metric: ``title``, ``higher_is_better`` and ``compute(fake, real, settings) -> float``, where
``fake`` and ``real`` are the samples and the test images through the dataset's domain classifier
(``advnets.metrics.suite.Extracted``: ``features``, ``logits``, flat ``pixels``)."""

from __future__ import annotations

from typing import Any

from advnets.metrics.registry import Metric


class ConfidenceGap(Metric):
    """|mean top-class probability of the samples - that of the test images|: 0 when G's digits are as clear-cut to
    the classifier as real ones; blurred or in-between digits give a lower confidence, hence a gap."""

    title = "confidence gap"
    higher_is_better = False
    description = "|mean top-class probability, samples - test images| (the domain classifier's)"

    def compute(self, fake: Any, real: Any, settings: Any) -> float:
        sure = [part.logits.softmax(dim=1).amax(dim=1).mean() for part in (fake, real)]
        return float((sure[0] - sure[1]).abs())
