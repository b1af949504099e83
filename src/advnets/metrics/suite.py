"""The metric suite beyond Parzen: samples against a real set, through the dataset's domain classifier.

``score_suite`` runs the classifier once over both sets, then each metric asked for by the compute function its
``advnets.metrics.registry`` entry names: the penultimate features to FID and KID (torchmetrics), improved
precision/recall and density/coverage (``knn``), the logits to the Inception-style score (torchmetrics) and the
class shares (``classes``), the raw pixels to the nearest-sample distance, and the same sets to a metric of one's
own (``eval.extra_metrics``). A real-vs-real run of the same function (training images as "samples") gives the
floor a perfect model would score.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
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
    HOW_TO_TRAIN,
    ClassifierCard,
    LeNet,
    as_images,
    available_classifiers,
    exact_float32,
    load_classifier,
)
from advnets.metrics.kid import KernelDistance, cached_real_sums
from advnets.metrics.knn import knn_sq_radii, manifold_scores
from advnets.metrics.registry import SUITE, MetricSpec, check_names, compute_of, recorded, spec

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
    the features' k-NN radii by k, filled in when first computed; ``shared``: what several metrics computed from
    the set once (``_shared``)."""

    features: Tensor
    logits: Tensor
    pixels: Tensor
    radii: dict[int, Tensor] = field(default_factory=dict)
    shared: dict[tuple, Any] = field(default_factory=dict)  # what several metrics of one pass share (``_shared``)


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
    extra: Mapping[str, MetricSpec] | None = None,
) -> dict[str, float]:
    """Every metric in ``names`` for ``fake`` against ``real`` (flat or [N, C, H, W] images in [0, 1]);
    ``nearest_sq_dist`` and ``extra`` as in :func:`score_extracted`."""
    names = check_names(names, extra)
    net, card = classifier or load_classifier(dataset)
    return score_extracted(
        extract(fake, net, card, settings.batch),
        extract_real(real, net, card, settings),
        names,
        settings,
        nearest_sq_dist,
        extra,
    )


def score_extracted(
    fake: Extracted,
    real: Extracted,
    names: Sequence[str],
    settings: SuiteSettings,
    nearest_sq_dist: float | None = None,
    extra: Mapping[str, MetricSpec] | None = None,
) -> dict[str, float]:
    """The metrics ``names`` on sets already through the classifier (so a set scored twice is extracted once),
    each by its registry entry's compute, in ``names``' order; ``extra``: metrics of one's own
    (``registry.own_spec``), which ``names`` may name too.

    Each compute starts from the torch seed ``settings.seed`` (KID's subsets, IS's splits, a metric of one's own:
    the same whichever metrics ran before), in full float32. ``nearest_sq_dist``: the value when the caller already
    has it (the Parzen protocol's test pass finds every test image's nearest sample on the way: the same
    distances, not computed twice)."""
    names = check_names(names, extra)
    known = {} if nearest_sq_dist is None else {"nearest_sq_dist": float(nearest_sq_dist)}
    device = fake.features.device
    out: dict[str, float] = {}
    forked = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with warnings.catch_warnings(), forked, exact_float32():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")  # 10k x 128: fine
        for name in names:
            if name in known:
                out[name] = known[name]
                continue
            torch.manual_seed(settings.seed)
            out[name] = float(compute_of(spec(name, extra))(fake, real, settings))
    return out


# -- the registry's compute functions: (fake, real, settings) -> float ------------------------------------------
def _shared(fake: Extracted, real: Extracted, key: tuple, make: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """What several metrics of one pair of sets share (one k-NN pass for precision and recall, one count of class
    shares), computed once and kept with the samples."""
    held = fake.shared.get(key)
    if held is None or held[0] is not real:
        held = fake.shared[key] = (real, make())
    return held[1]


def fid(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    """FID of the classifier's features (torchmetrics; float64 sums, as torchmetrics keeps them)."""
    metric = FrechetInceptionDistance(feature=Precomputed(fake.features.shape[1]), **LOCAL).to(fake.features.device)
    metric.update(real.features, real=True)
    metric.update(fake.features, real=False)
    return float(metric.compute())


def kid(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    """KID's mean over subsets, with the real side's kernel sums cached (``advnets.metrics.kid``)."""
    size = min(settings.kid_subset_size, len(fake.features), len(real.features))
    sums = cached_real_sums(real.features, len(fake.features), settings.kid_subsets, size, settings.seed, FLOAT32)
    metric = KernelDistance(
        feature=nn.Identity(), subsets=settings.kid_subsets, subset_size=size, real_sums=sums, **LOCAL
    )
    metric.to(fake.features.device).update(real.features, real=True)
    metric.update(fake.features, real=False)
    torch.manual_seed(settings.seed)  # the subsets the real sums were drawn with
    return float(metric.compute()[0])


def inception_score(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    """The Inception-style score of the classifier's logits (torchmetrics), split permutation from the seed."""
    metric = InceptionScore(feature=nn.Identity(), splits=settings.is_splits, **LOCAL).to(fake.logits.device)
    metric.update(fake.logits.double())
    return float(metric.compute()[0])


def _manifold(fake: Extracted, real: Extracted, settings: SuiteSettings) -> dict[str, Tensor]:
    """Precision, recall, density and coverage in one pass over the real x fake distances, kept for the others."""
    key = ("manifold", settings.pr_k, settings.dc_k)
    return _shared(
        fake, real, key, lambda: manifold_scores(real.features, fake.features, settings.pr_k, settings.dc_k, real.radii)
    )


def precision(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_manifold(fake, real, settings)["precision"])


def recall(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_manifold(fake, real, settings)["recall"])


def density(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_manifold(fake, real, settings)["density"])


def coverage(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_manifold(fake, real, settings)["coverage"])


def _class_shares(fake: Extracted, real: Extracted) -> dict[str, Tensor]:
    def make() -> dict[str, Tensor]:
        shares = ClassShares(nn.Identity(), real.logits.shape[1], **LOCAL).to(fake.logits.device)
        shares.update(real.logits, real=True)
        shares.update(fake.logits, real=False)
        return shares.compute()

    return _shared(fake, real, ("class_shares",), make)


def class_kl(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_class_shares(fake, real)["class_kl"])


def class_coverage(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    return float(_class_shares(fake, real)["class_coverage"])


def nearest_sq_dist(fake: Extracted, real: Extracted, settings: SuiteSettings) -> float:
    metric = NearestSampleDistance(**LOCAL).to(fake.pixels.device)
    metric.update(real.pixels, real=True)
    metric.update(fake.pixels, real=False)
    return float(metric.compute())


def protocol(
    card: ClassifierCard,
    names: Sequence[str],
    settings: SuiteSettings,
    n_fake: int,
    n_real: int,
    extra: Mapping[str, MetricSpec] | None = None,
    n_floor: int | None = None,
) -> dict:
    """What the numbers mean: classifier (md5), set sizes and settings, each metric's direction, and the title and
    direction of each metric of one's own (``own_metrics``: how report and compare show it, as data)."""
    own = {n: s for n, s in (extra or {}).items() if n in names}
    return {
        "classifier": {"dataset": card.dataset, "md5": card.md5, "test_accuracy": card.test_accuracy},
        "n_fake": n_fake,
        "n_real": n_real,
        "real": "test set",
        **({"n_floor": n_floor} if n_floor is not None else {}),
        **asdict(settings),
        "higher_is_better": {n: spec(n, extra).higher_is_better for n in names},
        **({"own_metrics": recorded(own)} if own else {}),
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
    extra: Mapping[str, MetricSpec] | None = None,
) -> dict[str, Any]:
    """``results.json``'s view of the suite: ``metrics`` (samples vs the test set), with ``reference`` also
    ``metrics_reference`` (the first len(samples) training images, or all there are, vs the test set: the
    real-vs-real floor; ``n_floor`` in the protocol says how many), and ``metrics_protocol``; or, when the dataset
    has no domain classifier, ``metrics_skipped`` with the reason (Parzen alone still stands). ``nearest_sq_dist``:
    the samples' value from the Parzen protocol's test pass, when the caller has it. ``extra``: metrics of one's
    own (``registry.own_spec``), computed after ``metrics``; their floor is computed afresh each time (the cache
    cannot tell when their code changes)."""
    names = check_names([*metrics, *(extra or {})], extra)
    if not names:
        return {}
    if dataset not in available_classifiers():
        why = f"no domain classifier for dataset={dataset!r} ({HOW_TO_TRAIN})"
        log.info("metrics beyond Parzen skipped: %s", why)
        return {"metrics_skipped": why}
    net, card = load_classifier(dataset)
    test_print = cache.fingerprint(test)
    real = extract_real(test, net, card, settings, test_print)  # once for both rows, cached for later evaluations
    fake = extract(samples, net, card, settings.batch)
    out: dict[str, Any] = {"metrics": score_extracted(fake, real, names, settings, nearest_sq_dist, extra)}
    n_floor = None
    if reference:
        floor_images = train[: len(samples)].to(samples.device)
        n_floor = len(floor_images)
        out["metrics_reference"] = real_vs_real(floor_images, real, test_print, (net, card), names, settings, extra)
    out["metrics_protocol"] = protocol(card, names, settings, len(samples), len(test), extra, n_floor)
    return out


def real_vs_real(
    floor_images: Tensor,
    real: Extracted,
    real_print: str,
    classifier: tuple[LeNet, ClassifierCard],
    names: Sequence[str],
    settings: SuiteSettings,
    extra: Mapping[str, MetricSpec] | None = None,
) -> dict[str, float]:
    """The floor: ``floor_images`` (real training images as samples) vs the real set (``real_print``: its
    ``cache.fingerprint``), in ``names``' order. The
    registry's metrics come through the cache (the same for every run); those of one's own (``extra``) are
    computed each time."""
    net, card = classifier
    own = [n for n in names if n not in SUITE]
    registered = [n for n in names if n in SUITE]
    extracted: list[Extracted] = []

    def floor_set() -> Extracted:
        if not extracted:
            extracted.append(extract(floor_images, net, card, settings.batch))
        return extracted[0]

    values: dict[str, float] = {}
    if registered:
        name = cache.key(
            "floor",
            classifier=card.md5,
            samples=cache.fingerprint(floor_images),
            real=real_print,
            names=registered,
            settings=asdict(settings),
            device=floor_images.device.type,
            float32=FLOAT32,
        )
        values.update(cache.cached(name, lambda: score_extracted(floor_set(), real, registered, settings), ".json"))
    if own:
        values.update(score_extracted(floor_set(), real, own, settings, extra=extra))
    return {n: values[n] for n in names}
