"""Speed of the metric suite beyond Parzen (advnets.metrics.suite) next to the paper's Parzen protocol, same run.

Shapes: 10,000 "samples" (MNIST training images 0..9999) against the 10,000 MNIST test images through the
committed MNIST classifier; the Parzen protocol on the same samples (1,000 validation images x 10 sigmas, then the
10,000 test images; its test pass also yields nearest_sq_dist, which the suite then takes from it, as an
evaluation does). The suite is timed cold (nothing cached) and warm (the test set's side, which never changes
between generators, from advnets.metrics.cache: what every evaluation after the first pays); ratios to the
Parzen protocol in the same run (target: <= 1). ``--each`` also times each metric alone, cold (shared work such as
the classifier's forward pass counted in each).

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
from advnets.metrics import cache
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
    os.environ["ADVNETS_CACHE_DIR"] = "off"  # memory only: "cold" is cold
    samples, valid, test = mnist(args.n)
    classifier = load_classifier("mnist")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; n = {args.n}")
    result = parzen_protocol(samples, valid, test, grid=list(SIGMA_GRID))
    parzen = best_of(lambda: parzen_protocol(samples, valid, test, grid=list(SIGMA_GRID)), args.repeats)
    print(f"{'Parzen protocol (baseline)':34s} {parzen:8.2f} s")

    def suite(names: tuple[str, ...] = SUITE, cold: bool = True) -> None:
        if cold:
            cache.clear_memory()
        score_suite(samples, test, "mnist", names, classifier=classifier, nearest_sq_dist=result.nearest_sq_dist)

    if args.each:
        for name in SUITE:
            seconds = best_of(lambda n=name: suite((n,)), 1)
            print(f"  {name:32s} {seconds:8.2f} s  ({seconds / parzen:.2f} x Parzen)")
    cold = best_of(suite, args.repeats)
    suite()  # fills the cache
    warm = best_of(lambda: suite(cold=False), args.repeats)
    print(f"{'whole suite, cold':34s} {cold:8.2f} s  ratio to Parzen {cold / parzen:.2f}")
    print(f"{'whole suite, test side cached':34s} {warm:8.2f} s  ratio to Parzen {warm / parzen:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
