"""Datasets held in memory and served as index batches."""

from advnets.data.base import (
    MNIST_RAW,
    ImageDataModule,
    InMemory,
    ShuffledIndexBatches,
    Splits,
    load_digits,
    load_mnist,
    resolve_root,
)

__all__ = [
    "MNIST_RAW",
    "ImageDataModule",
    "InMemory",
    "ShuffledIndexBatches",
    "Splits",
    "load_digits",
    "load_mnist",
    "resolve_root",
]
