"""Speed of the metric suite beyond Parzen (advnets.metrics.suite) next to the paper's Parzen protocol, same run.

Shapes: 10,000 "samples" (MNIST training images 0..9999) against the 10,000 MNIST test images through the
committed MNIST classifier; the Parzen protocol on the same samples (1,000 validation images x 10 sigmas, then the
10,000 test images; its test pass also yields nearest_sq_dist, which the suite then takes from it, as an
evaluation does). The suite is timed cold (nothing cached) and warm (the test set's side, which never changes
between generators, from advnets.metrics.cache: what every evaluation after the first pays); ratios to the
Parzen protocol in the same run (target: <= 1), as best-of times and as the median of rounds that run all three
back to back (the paired figure is the steadier on a shared machine). ``--each`` also times each metric alone,
cold (shared work such as the classifier's forward pass counted in each).

    python benchmarks/metrics_speed.py [--n 10000] [--repeats 3] [--threads N] [--each]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of Parzen, cold suite, cached suite")
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

    def parzen() -> None:
        parzen_protocol(samples, valid, test, grid=list(SIGMA_GRID))

    def suite(names: tuple[str, ...] = SUITE, cold: bool = True) -> None:
        if cold:
            cache.clear_memory()
        score_suite(samples, test, "mnist", names, classifier=classifier, nearest_sq_dist=result.nearest_sq_dist)

    suite()  # warm-up
    rounds = []  # (Parzen, cold, cached): one round each, back to back, so a round's ratios share the machine's load
    for _ in range(args.repeats):
        rounds.append((seconds(parzen), seconds(suite), seconds(lambda: suite(cold=False))))
    base, cold, warm = (min(r[i] for r in rounds) for i in range(3))
    print(f"{'Parzen protocol (baseline)':34s} {base:8.2f} s")
    if args.each:
        for name in SUITE:
            each = seconds(lambda n=name: suite((n,)))
            print(f"  {name:32s} {each:8.2f} s  ({each / base:.2f} x Parzen)")
    for label, best, i in (("whole suite, cold", cold, 1), ("whole suite, test side cached", warm, 2)):
        paired = statistics.median(r[i] / r[0] for r in rounds)
        print(
            f"{label:34s} {best:8.2f} s  ratio to Parzen {best / base:.2f} (best of each), {paired:.2f} (median of"
            f" paired rounds; target <= 1)"
        )


if __name__ == "__main__":
    main()
