"""Speed of the metric suite beyond Parzen (advnets.metrics.suite) next to the paper's Parzen protocol, same run.

Shapes: 10,000 "samples" (MNIST training images 0..9999) against the 10,000 MNIST test images through the
committed MNIST classifier; the Parzen protocol on the same samples (1,000 validation images x 10 sigmas, then the
10,000 test images). Prints each metric's own time (one metric at a time: shared work such as the classifier's
forward pass is counted in each), the whole suite, and the ratio suite / Parzen (target: <= 1).

    python benchmarks/metrics_speed.py [--n 10000] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from advnets.metrics.parzen import SIGMA_GRID, parzen_protocol
except ImportError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from advnets.metrics.parzen import SIGMA_GRID, parzen_protocol
from advnets.metrics.features import load_classifier
from advnets.metrics.suite import SUITE, score_suite


def mnist(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    root = os.environ.get("ADVNETS_DATA_DIR", "data")

    def flat(train: bool) -> torch.Tensor:
        ds = MNIST(root=root, train=train, download=False)
        return ds.data.reshape(len(ds.data), -1).float() / 255

    train, test = flat(True), flat(False)
    return train[:n], train[50000:51000], test[:n]


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--each", action="store_true", help="also time each metric alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples, valid, test = mnist(args.n)
    classifier = load_classifier("mnist")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; n = {args.n}")
    parzen = best_of(lambda: parzen_protocol(samples, valid, test, grid=list(SIGMA_GRID)), args.repeats)
    print(f"{'Parzen protocol (baseline)':32s} {parzen:8.2f} s")
    if args.each:
        for name in SUITE:
            seconds = best_of(lambda n=name: score_suite(samples, test, "mnist", [n], classifier=classifier), 1)
            print(f"  {name:30s} {seconds:8.2f} s  ({seconds / parzen:.2f} x Parzen)")
    suite = best_of(lambda: score_suite(samples, test, "mnist", SUITE, classifier=classifier), args.repeats)
    print(f"{'whole suite':32s} {suite:8.2f} s")
    print(f"ratio suite / Parzen protocol: {suite / parzen:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
