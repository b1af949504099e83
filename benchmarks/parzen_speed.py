"""Speed of advnets.metrics.parzen on the protocol shapes, next to scikit-learn, the 2014 algorithm and torch.mm.

Shapes (full): 10,000 samples as centres, 1,000 validation points x 10 sigmas, then 10,000 test points at the
chosen sigma, d = 784. Data: MNIST if $ADVNETS_DATA_DIR holds MNIST/raw/ (unless --random), else uniform [0, 1].
scikit-learn and the 2014 algorithm are timed on subsets and scaled linearly to the full point counts.

    python benchmarks/parzen_speed.py [--quick] [--random] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

try:
    from advnets.metrics.parzen import SIGMA_GRID, parzen_log_likelihood, parzen_protocol
except ImportError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from advnets.metrics.parzen import SIGMA_GRID, parzen_log_likelihood, parzen_protocol


def load_data(
    n: int, n_valid: int, n_test: int, force_random: bool
) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source, samples, valid, test) as float32 in [0, 1]."""
    root = os.environ.get("ADVNETS_DATA_DIR")
    if root and not force_random and (Path(root) / "MNIST" / "raw").is_dir():
        from torchvision.datasets import MNIST

        def flat(train: bool) -> torch.Tensor:
            ds = MNIST(root=root, train=train, download=False)
            return ds.data.reshape(len(ds.data), -1).to(torch.float32) / 255

        train, test = flat(True), flat(False)
        return "MNIST (train 0.. / 50000.. / test)", train[:n], train[50000 : 50000 + n_valid], test[:n_test]
    g = torch.Generator().manual_seed(0)
    parts = [torch.rand(k, 784, generator=g) for k in (n, n_valid, n_test)]
    return "uniform [0, 1] random", *parts


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """(min seconds, all seconds, last result) over ``repeats`` runs."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def original_2014(x: np.ndarray, mu: np.ndarray, sigma: float, batch_size: int = 10) -> np.ndarray:
    """The released code's algorithm, ported plainly: per batch of points, broadcast (batch x N x d) differences."""
    d = mu.shape[1]
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        a = -((xb[:, None, :] - mu[None, :, :]) ** 2).sum(2) / (2 * sigma**2)
        m = a.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(a - m).sum(1))
        out.append(lse - np.log(len(mu)) - d * np.log(sigma * np.sqrt(2 * np.pi)))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced shapes (2,000 / 200 / 2,000) and subsets")
    ap.add_argument("--random", action="store_true", help="uniform random data even if MNIST is available")
    ap.add_argument("--repeats", type=int, default=None, help="runs per timing, min reported (3; quick: 1)")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(cores)
    n, n_valid, n_test = (2000, 200, 2000) if args.quick else (10000, 1000, 10000)
    repeats = args.repeats or (1 if args.quick else 3)
    sk_valid, sk_test = (10, 50) if args.quick else (20, 200)
    og_valid, og_test = (5, 20) if args.quick else (10, 50)
    source, samples, valid, test = load_data(n, n_valid, n_test, args.random)
    n_sig = len(SIGMA_GRID)

    print(f"torch {torch.__version__} | {platform.processor() or platform.machine()} | threads {cores}")
    print(f"data: {source}; samples {n} x {samples.shape[1]}, valid {n_valid} x {n_sig} sigmas, test {n_test}")
    print(f"timings: min of {repeats} run(s) (shared machines are noisy)\n")

    # warm-up (thread pools, allocator), not timed
    parzen_protocol(samples[:500], valid[:50], test[:500])
    parzen_protocol(samples[:500], valid[:50], test[:500], precision="float32")

    # 1. advnets, both modes
    t64, all64, res = timed(lambda: parzen_protocol(samples, valid, test, precision="float64"), repeats)
    t32, all32, res32 = timed(lambda: parzen_protocol(samples, valid, test, precision="float32"), repeats)
    sigma = res.sigma

    # 4. bare matmul floor: the same two products
    def floor(dtype: torch.dtype) -> Callable[[], None]:
        c, v, t = samples.to(dtype), valid.to(dtype), test.to(dtype)
        return lambda: (torch.mm(v, c.T), torch.mm(t, c.T))

    f64, _, _ = timed(floor(torch.float64), repeats)
    f32, _, _ = timed(floor(torch.float32), repeats)

    # 2. scikit-learn KernelDensity (exact defaults atol=rtol=0), subsets scaled to full counts
    from sklearn.neighbors import KernelDensity

    c_np, v_np, t_np = (a.double().numpy() for a in (samples, valid, test))
    sk_fit = [KernelDensity(kernel="gaussian", bandwidth=s).fit(c_np) for s in SIGMA_GRID]
    t0 = time.perf_counter()
    for kde in sk_fit:
        kde.score_samples(v_np[:sk_valid])
    sk_v = time.perf_counter() - t0
    kde = KernelDensity(kernel="gaussian", bandwidth=sigma).fit(c_np)
    t0 = time.perf_counter()
    sk_ll = kde.score_samples(t_np[:sk_test])
    sk_t = time.perf_counter() - t0
    sk_full = sk_v * n_valid / sk_valid + sk_t * n_test / sk_test

    # 3. the 2014 algorithm, float32 as the original ran it, subsets scaled likewise
    c32, v32, t32_np = (a.numpy() for a in (samples, valid, test))
    t0 = time.perf_counter()
    for s in SIGMA_GRID:
        original_2014(v32[:og_valid], c32, s)
    og_v = time.perf_counter() - t0
    t0 = time.perf_counter()
    og_ll = original_2014(t32_np[:og_test], c32, sigma)
    og_t = time.perf_counter() - t0
    og_full = og_v * n_valid / og_valid + og_t * n_test / og_test

    ref = parzen_log_likelihood(test[: max(sk_test, og_test)], samples, [sigma])[0].numpy()
    sk_diff = float(np.max(np.abs(sk_ll - ref[:sk_test])))
    og_diff = float(np.max(np.abs(og_ll - ref[:og_test])))

    rows = [
        ("advnets float64 (reported)", t64, "measured"),
        ("advnets float32 (monitor)", t32, "measured"),
        ("scikit-learn KernelDensity", sk_full, f"scaled from {sk_valid} valid x {n_sig} + {sk_test} test points"),
        ("original 2014 algorithm", og_full, f"scaled from {og_valid} valid x {n_sig} + {og_test} test points"),
        ("torch.mm floor float64", f64, "measured"),
        ("torch.mm floor float32", f32, "measured"),
    ]
    print(f"{'method':<28} {'wall s':>10} {'x advnets64':>12}  note")
    for name, secs, note in rows:
        print(f"{name:<28} {secs:>10.3f} {secs / t64:>12.2f}  {note}")
    print(
        f"\nall runs, advnets float64: {', '.join(f'{t:.2f}' for t in all64)} s; float32: "
        f"{', '.join(f'{t:.2f}' for t in all32)} s (median {statistics.median(all64):.2f} / "
        f"{statistics.median(all32):.2f})"
    )
    print(f"result float64: LL {res.log_likelihood:.4f} +- {res.standard_error:.4f} nats at sigma {sigma:.4f}")
    print(f"result float32: LL {res32.log_likelihood:.4f} (diff {res32.log_likelihood - res.log_likelihood:+.2e})")
    print(f"agreement on subsets, max |LL diff| vs advnets float64: sklearn {sk_diff:.2e}, original {og_diff:.2e}")

    checks = [
        ("sklearn / advnets64", sk_full / t64, ">= 100", sk_full / t64 >= 100),
        ("original / advnets64", og_full / t64, ">= 1000", og_full / t64 >= 1000),
        ("advnets64 / floor64", t64 / f64, "<= 3", t64 / f64 <= 3),
        ("advnets32 / floor32", t32 / f32, "(info)", None),
        ("advnets64 / advnets32", t64 / t32, "(info)", None),
    ]
    print(f"\n{'ratio':<24} {'value':>10}  target")
    for name, val, target, ok in checks:
        verdict = "" if ok is None else ("  met" if ok else "  NOT met")
        print(f"{name:<24} {val:>10.2f}  {target}{verdict}")
    if not math.isfinite(sk_diff) or sk_diff > 1e-6:
        print(
            f"note: scikit-learn's KernelDensity is off by up to {sk_diff:.3g} nats here (d={samples.shape[1]}); "
            "brute force agrees with advnets. Its tree bounds break down in high dimension / small bandwidth; "
            "in d=5 it agrees with advnets to 1e-8 (tests/test_parzen.py)."
        )


if __name__ == "__main__":
    main()
