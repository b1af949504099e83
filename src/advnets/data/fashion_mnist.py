"""Fashion-MNIST (Xiao et al. 2017): MNIST's format and sizes, clothes instead of digits; split as MNIST."""

from __future__ import annotations

from advnets.data.base import ImageDataModule, Labels, Splits
from advnets.data.mnist import load_idx_images, load_idx_labels

# torchvision's FashionMNIST/raw layout: (size in bytes, md5) of the four published IDX files, uncompressed.
FASHION_MNIST_RAW = {
    "train-images-idx3-ubyte": (47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": (60008, "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": (7840016, "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": (10008, "15d484375f8d13e6eb1aabb0c3f46965"),
}


def load_fashion_mnist(root: str | None, n_train: int, n_valid: int, download: bool = True) -> Splits:
    """Fashion-MNIST with MNIST's splits: train 0..n_train-1, valid the next n_valid, test the official 10k."""
    from torchvision.datasets import FashionMNIST

    return load_idx_images(FashionMNIST, FASHION_MNIST_RAW, root, n_train, n_valid, download)


class FashionMNISTData(ImageDataModule):
    """Fashion-MNIST (``conf/dataset/fashion_mnist.yaml``): downloaded by torchvision when missing, checked."""

    def fetch(self) -> None:
        load_fashion_mnist(self.root, self.n_train, self.n_valid, self.download)

    def read(self) -> Splits:
        return load_fashion_mnist(self.root, self.n_train, self.n_valid, download=self.download)

    def labels(self) -> Labels:
        """The garment class (0-9: T-shirt/top .. ankle boot) of each image."""
        from torchvision.datasets import FashionMNIST

        self.load()
        return load_idx_labels(FashionMNIST, self.root, self.n_train, self.n_valid)
