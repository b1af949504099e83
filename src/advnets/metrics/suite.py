"""The metric suite beyond Parzen: samples against a real set, through the dataset's domain classifier.

``score_suite`` runs the classifier once over both sets and feeds its penultimate features to FID and KID
(torchmetrics), improved precision/recall and density/coverage (``knn``), its logits to the Inception-style score
(torchmetrics) and the class shares (``classes``), and the raw pixels to the nearest-sample distance. A
real-vs-real run of the same function (training images as "samples") gives the floor a perfect model would score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from advnets.errors import UserError
from advnets.metrics.classes import ClassShares, NearestSampleDistance
from advnets.metrics.features import ClassifierCard, LeNet, as_images, available_classifiers, load_classifier
from advnets.metrics.knn import DensityCoverage, ImprovedPrecisionRecall
from advnets.metrics.registry import METRICS

SUITE = (
    "fid",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "inception_score",
    "class_kl",
    "class_coverage",
    "nearest_sq_dist",
)
CHEAP = ("fid", "kid", "precision", "recall")  # what a training-time monitor can afford


@dataclass(frozen=True)
class SuiteSettings:
    """How the suite is computed (recorded beside the numbers; runs with other settings are not averaged)."""

    pr_k: int = 3  # [Kynkaanniemi 2019] k of improved precision/recall
    dc_k: int = 5  # [Naeem 2020] k of density/coverage
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    seed: int = 0  # KID subsets and IS splits are drawn with this seed
    batch: int = 2000


class Precomputed(nn.Module):
    """Identity on features the suite already extracted (torchmetrics' ``feature=`` needs a module)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x.double()


def check_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise UserError(f"eval.metrics contains {', '.join(unknown)}; allowed: {', '.join(SUITE)}")
    return list(dict.fromkeys(names))


@torch.no_grad()
def _extract(net: LeNet, images: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    feats, logits = [], []
    for i in range(0, len(images), batch):
        f = net.features(images[i : i + batch].float())
        feats.append(f)
        logits.append(net.head(f))
    return torch.cat(feats), torch.cat(logits)


def score_suite(
    fake: Tensor,
    real: Tensor,
    dataset: str,
    names: Sequence[str] = SUITE,
    settings: SuiteSettings = SuiteSettings(),
    classifier: tuple[LeNet, ClassifierCard] | None = None,
) -> dict[str, float]:
    """Every metric in ``names`` for ``fake`` against ``real`` (flat or [N, C, H, W] images in [0, 1])."""
    names = check_names(names)
    net, card = classifier or load_classifier(dataset)
    device = fake.device
    net = net.to(device)
    fake, real = as_images(fake, card.image_shape), as_images(real, card.image_shape)
    if not torch.isfinite(fake).all():
        raise UserError("the samples contain NaN/inf (a diverged generator); nothing to score")
    f_fake, l_fake = _extract(net, fake, settings.batch)
    f_real, l_real = _extract(net, real, settings.batch)
    feat = Precomputed(card.feature_dim)
    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        if "fid" in names:
            fid = FrechetInceptionDistance(feature=feat).to(device)
            fid.update(f_real, real=True)
            fid.update(f_fake, real=False)
            out["fid"] = float(fid.compute())
        if "kid" in names:
            size = min(settings.kid_subset_size, len(f_fake), len(f_real))
            kid = KernelInceptionDistance(feature=feat, subsets=settings.kid_subsets, subset_size=size).to(device)
            kid.update(f_real, real=True)
            kid.update(f_fake, real=False)
            out["kid"] = float(kid.compute()[0])
        if "inception_score" in names:
            inception = InceptionScore(feature=Precomputed(card.n_classes), splits=settings.is_splits).to(device)
            inception.update(l_fake)
            out["inception_score"] = float(inception.compute()[0])
    if {"precision", "recall"} & set(names):
        pr = ImprovedPrecisionRecall(k=settings.pr_k).to(device)
        pr.update(f_real, real=True)
        pr.update(f_fake, real=False)
        out.update({k: float(v) for k, v in pr.compute().items() if k in names})
    if {"density", "coverage"} & set(names):
        dc = DensityCoverage(k=settings.dc_k).to(device)
        dc.update(f_real, real=True)
        dc.update(f_fake, real=False)
        out.update({k: float(v) for k, v in dc.compute().items() if k in names})
    if {"class_kl", "class_coverage"} & set(names):
        shares = ClassShares(nn.Identity(), card.n_classes).to(device)
        shares.update(l_real, real=True)
        shares.update(l_fake, real=False)
        out.update({k: float(v) for k, v in shares.compute().items() if k in names})
    if "nearest_sq_dist" in names:
        nearest = NearestSampleDistance().to(device)
        nearest.update(real.flatten(1), real=True)
        nearest.update(fake.flatten(1), real=False)
        out["nearest_sq_dist"] = float(nearest.compute())
    return {n: out[n] for n in names}


def protocol(dataset: str, names: Sequence[str], settings: SuiteSettings, n_fake: int, n_real: int) -> dict:
    """What the numbers mean: classifier (md5), set sizes and settings, and each metric's direction."""
    card = load_classifier(dataset)[1]
    return {
        "classifier": {"dataset": card.dataset, "md5": card.md5, "test_accuracy": card.test_accuracy},
        "n_fake": n_fake,
        "n_real": n_real,
        "real": "test set",
        **asdict(settings),
        "higher_is_better": {n: METRICS[n].higher_is_better for n in names},
    }


def evaluate_metrics(samples: Tensor, train: Tensor, test: Tensor, dataset: str, eval_cfg: Any) -> dict[str, Any]:
    """``results.json``'s view of the suite: ``metrics`` (samples vs the test set), ``metrics_reference`` (the first
    len(samples) training images vs the test set: the real-vs-real floor) and ``metrics_protocol``; or, when the
    dataset has no domain classifier, ``metrics_skipped`` with the reason (Parzen alone still stands)."""
    names = check_names(list(eval_cfg.get("metrics") or []))
    if not names:
        return {}
    if dataset not in available_classifiers():
        why = f"no domain classifier for dataset={dataset!r} (train one with `advnets-classifier dataset={dataset}`)"
        print(f"advnets: metrics beyond Parzen skipped: {why}")
        return {"metrics_skipped": why}
    settings = SuiteSettings(**{**dict(eval_cfg.get("suite") or {}), "seed": int(eval_cfg.seed)})
    out: dict[str, Any] = {"metrics": score_suite(samples, test, dataset, names, settings)}
    if eval_cfg.get("reference"):
        real = train[: len(samples)].to(samples.device)
        out["metrics_reference"] = score_suite(real, test, dataset, names, settings)
    out["metrics_protocol"] = protocol(dataset, names, settings, len(samples), len(test))
    return out
