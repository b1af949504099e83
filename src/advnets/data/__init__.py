"""Datasets held in memory and served as index batches: one module per dataset, chosen by ``_target_``."""

from advnets.data.base import ImageDataModule, InMemory, Labels, ShuffledIndexBatches, Splits, resolve_root
from advnets.data.digits import DigitsData, load_digits
from advnets.data.fashion_mnist import FASHION_MNIST_RAW, FashionMNISTData, load_fashion_mnist
from advnets.data.mnist import MNIST_RAW, MNISTData, load_mnist

__all__ = [
    "FASHION_MNIST_RAW",
    "MNIST_RAW",
    "FashionMNISTData",
    "DigitsData",
    "ImageDataModule",
    "InMemory",
    "Labels",
    "MNISTData",
    "ShuffledIndexBatches",
    "Splits",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "resolve_root",
]
