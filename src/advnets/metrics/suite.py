"""The metric suite beyond Parzen: samples against a real set, through the dataset's domain classifier.

``score_suite`` runs the classifier once over both sets and feeds its penultimate features to FID and KID
(torchmetrics), improved precision/recall and density/coverage (``knn``), its logits to the Inception-style score
(torchmetrics) and the class shares (``classes``), and the raw pixels to the nearest-sample distance. A
real-vs-real run of the same function (training images as "samples") gives the floor a perfect model would score.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from advnets.errors import UserError
from advnets.logs import get_logger
from advnets.metrics import cache
from advnets.metrics.classes import ClassShares, NearestSampleDistance
from advnets.metrics.features import (
    FLOAT32,
    ClassifierCard,
    LeNet,
    as_images,
    available_classifiers,
    exact_float32,
    load_classifier,
)
from advnets.metrics.kid import KernelDistance, cached_real_sums
from advnets.metrics.knn import knn_sq_radii, manifold_scores
from advnets.metrics.registry import METRICS, SUITE, check_names

CHEAP = ("fid", "kid", "precision", "recall")  # what a training-time monitor can afford
log = get_logger(__name__)


@dataclass(frozen=True)
class SuiteOptions:
    """The suite's settings a config gives (``eval.suite``)."""

    pr_k: int = 3  # [Kynkaanniemi 2019] k of improved precision/recall
    dc_k: int = 5  # [Naeem 2020] k of density/coverage
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10


@dataclass(frozen=True)
class SuiteSettings(SuiteOptions):
    """How the suite is computed (recorded beside the numbers; runs with other settings are not averaged)."""

    seed: int = 0  # KID subsets and IS splits are each drawn with this seed
    batch: int = 256  # images per classifier forward pass


class Precomputed(nn.Module):
    """Identity on features the suite already extracted (torchmetrics' ``feature=`` needs a module)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x.double()


@dataclass(frozen=True)
class Extracted:
    """One image set through the classifier: penultimate features, logits, the flat pixels, and (for a real set)
    the features' k-NN radii by k, filled in when first computed."""

    features: Tensor
    logits: Tensor
    pixels: Tensor
    radii: dict[int, Tensor] = field(default_factory=dict)


@torch.no_grad()
def extract(images: Tensor, net: LeNet, card: ClassifierCard, batch: int = 256) -> Extracted:
    """The classifier's view of ``images`` (flat or [N, C, H, W], in [0, 1]) in full float32 (no TF32 on CUDA);
    bad shapes or NaN are clear errors."""
    images = as_images(images, card.image_shape)
    if not bool(torch.isfinite(images.sum())) and not bool(torch.isfinite(images).all()):  # cheap pass first
        raise UserError("the images contain NaN/inf (a diverged generator?); nothing to score")
    net = net.to(images.device)
    feats, logits = [], []
    with exact_float32():
        for i in range(0, len(images), batch):
            f = net.features(images[i : i + batch].float())
            feats.append(f)
            logits.append(net.head(f))
    return Extracted(torch.cat(feats), torch.cat(logits), images.flatten(1))


def extract_real(
    images: Tensor, net: LeNet, card: ClassifierCard, settings: SuiteSettings, fingerprint: str | None = None
) -> Extracted:
    """:func:`extract` plus the k-NN radii of a real set, through :mod:`advnets.metrics.cache`: a test or
    validation set is scored against every generator, and its side of the suite never changes.
    ``fingerprint``: ``cache.fingerprint(images)`` when the caller already has it."""
    ks = sorted({settings.pr_k, settings.dc_k})

    def compute() -> dict[str, Tensor]:
        got = extract(images, net, card, settings.batch)
        radii = knn_sq_radii(got.features, ks)
        return {
            "features": got.features.cpu(),
            "logits": got.logits.cpu(),
            **{f"radii_{k}": radii[k].cpu() for k in ks},
        }

    images_print = fingerprint or cache.fingerprint(images)
    name = cache.key(
        "real",
        classifier=card.md5,
        images=images_print,
        ks=ks,
        batch=settings.batch,
        device=images.device.type,  # cuDNN's convolutions round otherwise than the CPU's
        float32=FLOAT32,
    )
    entry = cache.cached(name, compute, ".pt")
    device = images.device
    return Extracted(
        entry["features"].to(device),
        entry["logits"].to(device),
        as_images(images, card.image_shape).flatten(1),
        {k: entry[f"radii_{k}"].to(device) for k in ks},
    )


LOCAL = {"sync_on_compute": False}
"""The suite scores whole sets held by one process: it runs on rank zero after training (the other ranks may
be gone) and on every rank alike in the monitor (each holds the same samples), so ``compute`` must never
gather across DDP ranks. Sharded use across ranks builds the Metric classes directly."""


def score_suite(
    fake: Tensor,
    real: Tensor,
    dataset: str,
    names: Sequence[str] = SUITE,
    settings: SuiteSettings = SuiteSettings(),
    classifier: tuple[LeNet, ClassifierCard] | None = None,
    nearest_sq_dist: float | None = None,
) -> dict[str, float]:
    """Every metric in ``names`` for ``fake`` against ``real`` (flat or [N, C, H, W] images in [0, 1]);
    ``nearest_sq_dist`` as in :func:`score_extracted`."""
    names = check_names(names)
    net, card = classifier or load_classifier(dataset)
    return score_extracted(
        extract(fake, net, card, settings.batch),
        extract_real(real, net, card, settings),
        names,
        settings,
        nearest_sq_dist,
    )


def score_extracted(
    fake: Extracted,
    real: Extracted,
    names: Sequence[str],
    settings: SuiteSettings,
    nearest_sq_dist: float | None = None,
) -> dict[str, float]:
    """The suite on sets already through the classifier (so a set scored twice is extracted once).

    ``nearest_sq_dist``: the value when the caller already has it (the Parzen protocol's test pass finds every
    test image's nearest sample on the way: the same distances, not computed twice)."""
    names = check_names(names)
    device = fake.features.device
    feat = Precomputed(fake.features.shape[1])
    out: dict[str, float] = {}
    forked = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with warnings.catch_warnings(), forked, exact_float32():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")  # 10k x 128: fine
        torch.manual_seed(settings.seed)
        if "fid" in names:
            fid = FrechetInceptionDistance(feature=feat, **LOCAL).to(device)  # float64 sums, as torchmetrics keeps them
            fid.update(real.features, real=True)
            fid.update(fake.features, real=False)
            out["fid"] = float(fid.compute())
        if "kid" in names:
            size = min(settings.kid_subset_size, len(fake.features), len(real.features))
            sums = cached_real_sums(
                real.features, len(fake.features), settings.kid_subsets, size, settings.seed, FLOAT32
            )
            kid = KernelDistance(
                feature=nn.Identity(), subsets=settings.kid_subsets, subset_size=size, real_sums=sums, **LOCAL
            )
            kid.to(device).update(real.features, real=True)
            kid.update(fake.features, real=False)
            torch.manual_seed(settings.seed)  # the subsets the real sums were drawn with
            out["kid"] = float(kid.compute()[0])
        if "inception_score" in names:
            torch.manual_seed(settings.seed)  # the split permutation: the same whichever metrics ran before
            inception = InceptionScore(feature=nn.Identity(), splits=settings.is_splits, **LOCAL).to(device)
            inception.update(fake.logits.double())
            out["inception_score"] = float(inception.compute()[0])
    pr = {"precision", "recall"} & set(names)
    dc = {"density", "coverage"} & set(names)
    if pr or dc:
        scores = manifold_scores(
            real.features, fake.features, settings.pr_k if pr else None, settings.dc_k if dc else None, real.radii
        )
        out.update({k: float(v) for k, v in scores.items() if k in names})
    if {"class_kl", "class_coverage"} & set(names):
        shares = ClassShares(nn.Identity(), real.logits.shape[1], **LOCAL).to(device)
        shares.update(real.logits, real=True)
        shares.update(fake.logits, real=False)
        out.update({k: float(v) for k, v in shares.compute().items() if k in names})
    if "nearest_sq_dist" in names and nearest_sq_dist is not None:
        out["nearest_sq_dist"] = float(nearest_sq_dist)
    elif "nearest_sq_dist" in names:
        nearest = NearestSampleDistance(**LOCAL).to(device)
        nearest.update(real.pixels, real=True)
        nearest.update(fake.pixels, real=False)
        out["nearest_sq_dist"] = float(nearest.compute())
    return {n: out[n] for n in names}


def protocol(card: ClassifierCard, names: Sequence[str], settings: SuiteSettings, n_fake: int, n_real: int) -> dict:
    """What the numbers mean: classifier (md5), set sizes and settings, and each metric's direction."""
    return {
        "classifier": {"dataset": card.dataset, "md5": card.md5, "test_accuracy": card.test_accuracy},
        "n_fake": n_fake,
        "n_real": n_real,
        "real": "test set",
        **asdict(settings),
        "higher_is_better": {n: METRICS[n].higher_is_better for n in names},
    }


def evaluate_metrics(
    samples: Tensor,
    train: Tensor,
    test: Tensor,
    dataset: str,
    metrics: Sequence[str],
    settings: SuiteSettings,
    reference: bool,
    nearest_sq_dist: float | None = None,
) -> dict[str, Any]:
    """``results.json``'s view of the suite: ``metrics`` (samples vs the test set), with ``reference`` also
    ``metrics_reference`` (the first len(samples) training images vs the test set: the real-vs-real floor), and
    ``metrics_protocol``; or, when the dataset has no domain classifier, ``metrics_skipped`` with the reason
    (Parzen alone still stands). ``nearest_sq_dist``: the samples' value from the Parzen protocol's test pass,
    when the caller has it."""
    names = check_names(list(metrics))
    if not names:
        return {}
    if dataset not in available_classifiers():
        why = f"no domain classifier for dataset={dataset!r} (train one with `advnets-classifier dataset={dataset}`)"
        log.info("metrics beyond Parzen skipped: %s", why)
        return {"metrics_skipped": why}
    net, card = load_classifier(dataset)
    test_print = cache.fingerprint(test)
    real = extract_real(test, net, card, settings, test_print)  # once for both rows, cached for later evaluations
    fake = extract(samples, net, card, settings.batch)
    out: dict[str, Any] = {"metrics": score_extracted(fake, real, names, settings, nearest_sq_dist)}
    if reference:
        floor_images = train[: len(samples)].to(samples.device)

        def floor() -> dict[str, float]:
            return score_extracted(extract(floor_images, net, card, settings.batch), real, names, settings)

        name = cache.key(
            "floor",
            classifier=card.md5,
            samples=cache.fingerprint(floor_images),
            real=test_print,
            names=names,
            settings=asdict(settings),
            device=floor_images.device.type,
            float32=FLOAT32,
        )
        out["metrics_reference"] = cache.cached(name, floor, ".json")  # real vs real: the same for every run
    out["metrics_protocol"] = protocol(card, names, settings, len(samples), len(test))
    return out
