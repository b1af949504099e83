"""The domain classifiers: a small LeNet-style conv net per dataset and its committed weights and card; its
penultimate features feed FID, KID and precision-recall, its logits the Inception-style score and the class metrics.

Weights and cards live in ``advnets/metrics/classifiers/<dataset>.pt|.json`` (package data), and for other
datasets in the user cache's ``classifiers/`` (written by ``advnets-classifier``), so evaluation never downloads
anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advnets.errors import UserError

CLASSIFIER_DIR = Path(__file__).resolve().parent / "classifiers"
FLOAT32 = "ieee"
"""The float32 arithmetic of the classifier and the metrics (:func:`exact_float32`); part of every cache key."""


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 on CUDA for the duration: no TF32 in cuDNN convolutions or in matmuls (``highest`` matmul
    precision leaves cuDNN's convolutions in TF32). A CPU computes float32 in full anyway. The caller's
    settings come back afterwards."""
    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        before = conv.fp32_precision, matmul.fp32_precision
        conv.fp32_precision = matmul.fp32_precision = FLOAT32
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = before
        return
    before = torch.backends.cudnn.allow_tf32, matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = before


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)``; without gradients, as two elementwise maxima over a channels-last tensor's neighbouring
    rows and columns (exactly the same values, about twice as fast on a CPU as the pooling kernel)."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or not x.is_contiguous(memory_format=torch.channels_last):
            return F.max_pool2d(x, 2)
        n, c, h, w = x.shape
        nhwc = x.permute(0, 2, 3, 1)[:, : h - h % 2, : w - w % 2]
        rows = nhwc.unflatten(1, (h // 2, 2))
        rows = torch.maximum(rows[:, :, 0], rows[:, :, 1])  # [N, H/2, W, C]
        cols = rows.unflatten(2, (w // 2, 2))
        return torch.maximum(cols[:, :, :, 0], cols[:, :, :, 1]).permute(0, 3, 1, 2)


class LeNet(nn.Module):
    """Two 5x5 conv + max-pool stages, one hidden layer (the features), one linear layer (the logits)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        n_classes: int = 10,
        channels: tuple[int, int] = (16, 32),
        feature_dim: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.convs = nn.Sequential(  # pool, then ReLU: the same numbers as ReLU, then pool, on 1/4 of the values
            nn.Conv2d(c, channels[0], 5, padding=2),
            MaxPool2x2(),
            nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 5, padding=2),
            MaxPool2x2(),
            nn.ReLU(),
            nn.Flatten(),
        )
        flat = channels[1] * (h // 4) * (w // 4)
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))
        self.to(memory_format=torch.channels_last)  # conv weights channels-last too (see ``features``)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations of images ``[N, C, H, W]`` or flat ``[N, C*H*W]`` in [0, 1].

        Channels-last: the same numbers to float32 rounding, twice as fast on a CPU (the pooling and the
        one-channel convolution are slow in NCHW there)."""
        images = as_images(x, self.image_shape).contiguous(memory_format=torch.channels_last)
        return self.hidden(self.convs(images))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def as_images(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:
    """``x`` as ``[N, C, H, W]``; any other shape is a clear error."""
    c, h, w = image_shape
    if x.dim() == 2 and x.shape[1] == c * h * w:
        return x.reshape(len(x), c, h, w)
    if x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w):
        return x
    raise UserError(
        f"images of shape {tuple(x.shape)} do not fit the domain classifier; "
        f"allowed: [N, {c * h * w}] or [N, {c}, {h}, {w}]"
    )


@dataclass(frozen=True)
class ClassifierCard:
    """What a committed classifier is: its dataset, architecture, test accuracy and the weights' md5."""

    dataset: str
    image_shape: tuple[int, int, int]
    n_classes: int
    channels: tuple[int, int]
    feature_dim: int
    test_accuracy: float
    n_test: int
    n_train: int
    epochs: int
    seed: int
    md5: str
    weights: str
    training: dict = field(default_factory=dict)  # lr, batch_size, dropout: how to train it again

    @classmethod
    def read(cls, path: Path) -> ClassifierCard:
        raw = json.loads(path.read_text())
        for key in ("image_shape", "channels"):
            raw[key] = tuple(raw[key])
        return cls(**raw)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def classifier_folders() -> list[Path]:
    """Where domain classifiers are looked up, in this order: the package's own (``advnets/metrics/classifiers``),
    then the user cache's (``advnets.metrics.cache.classifier_dir``, where ``advnets-classifier`` writes)."""
    from advnets.metrics.cache import classifier_dir

    user = classifier_dir()
    return [CLASSIFIER_DIR, *([user] if user is not None else [])]


def available_classifiers(folder: Path | None = None) -> list[str]:
    """Datasets with a domain classifier in ``folder``, or in any of :func:`classifier_folders`."""
    folders = [folder] if folder is not None else classifier_folders()
    return sorted({p.stem for f in folders for p in f.glob("*.json")})


def find_classifier(dataset: str, folder: Path | None = None) -> Path | None:
    """The card of ``dataset``'s classifier: in ``folder``, or the first of :func:`classifier_folders` holding one."""
    for candidate in [folder] if folder is not None else classifier_folders():
        if (candidate / f"{dataset}.json").is_file():
            return candidate / f"{dataset}.json"
    return None


HOW_TO_TRAIN = (
    "train one with `advnets-classifier dataset=DATASET`: the dataset config the run used, and the --config-dir "
    "it came from if it is one of your own"
)


def load_classifier(dataset: str, folder: Path | None = None) -> tuple[LeNet, ClassifierCard]:
    """The frozen classifier of ``dataset`` (eval mode, no gradients) and its card; md5 checked."""
    card_path = find_classifier(dataset, folder)
    if card_path is None:
        names = ", ".join(available_classifiers(folder)) or "none"
        raise UserError(f"no domain classifier for dataset={dataset!r}; available: {names} ({HOW_TO_TRAIN})")
    try:
        card = ClassifierCard.read(card_path)
    except (OSError, ValueError, TypeError, KeyError) as err:  # damaged, or not a card written by advnets-classifier
        raise UserError(f"cannot read domain classifier card {card_path}: {type(err).__name__}: {err}") from None
    weights = card_path.parent / card.weights
    if not weights.is_file() or md5_of(weights) != card.md5:
        raise UserError(f"domain classifier weights {weights} missing or not matching md5 {card.md5} in {card_path}")
    net = LeNet(card.image_shape, card.n_classes, card.channels, card.feature_dim)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval().requires_grad_(False)
    return net, card
