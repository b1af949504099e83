"""Gaussian Parzen-window log-likelihood of the 2014 paper (``parzen_ll.py``), exact and blocked.

LL(x) = logsumexp_j(-||x - c_j||^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi)), in nats per point.

The squared distances come block by block from ``advnets.metrics.distances`` (one matrix product per
(x block, centre block), clamped at 0 here); each block is reused for every sigma, and a streaming log-sum-exp
(running minimum distance + running sum) carries the result across centre blocks, so no full N x M matrix is
ever allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from advnets.metrics.distances import (
    DEFAULT_BLOCK_BYTES,
    InputError,
    Prepared,
    check_block_bytes,
    check_pair,
    check_points,
    check_precision,
    distance_blocks,
    prepare,
)

__all__ = ["SIGMA_GRID", "ParzenResult", "parzen_log_likelihood", "parzen_protocol", "select_sigma"]

SIGMA_GRID: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))
"""The paper's bandwidth grid: numpy.logspace(-1, 0, 10) = 0.1 ... 1.0."""


# --------------------------------------------------------------------------------------------------- checks
def _check_sigmas(sigmas: Sequence[float] | Tensor | float) -> Tensor:
    """Sigmas as a 1-D float64 CPU tensor, each finite and > 0."""
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"sigmas={sigmas!r} is not a sequence of numbers") from err
    if s.numel() == 0:
        raise InputError("sigmas is empty; give at least one bandwidth > 0")
    bad = s[~torch.isfinite(s) | (s <= 0)]
    if bad.numel():
        raise InputError(f"sigma={bad[0].item()!r} is not allowed; every sigma must be finite and > 0")
    return s


# ------------------------------------------------------------------------------------------------ kernel
def _log_likelihood(x: Tensor, prep: Prepared, sig: Tensor, block_bytes: int, nearest: Tensor | None = None) -> Tensor:
    """Unchecked core of :func:`parzen_log_likelihood` (inputs validated, centres prepared).

    ``nearest`` (float64, ``len(x)``), when given, receives each point's squared distance to its nearest centre:
    the running minimum the log-sum-exp shifts by, so it costs nothing extra."""
    x = x.detach()
    dtype, device = prep.dtype, prep.aug.device
    n_c, dim = prep.aug.shape[0], prep.aug.shape[1] - 2
    neg_a = (-0.5 / sig.pow(2)).tolist()  # -1 / (2 sigma^2) per sigma
    neg_a_t = torch.tensor(neg_a, dtype=torch.float64, device=device)[:, None]
    out = torch.empty(len(neg_a), x.shape[0], dtype=torch.float64, device=device)
    item = torch.finfo(dtype).bits // 8
    # exp(exp_floor) is still a normal number; N * exp(exp_floor) is far below the precision of the result
    exp_floor = -700.0 if dtype == torch.float64 else -87.0
    work: Tensor | None = None
    run_min: Tensor | None = None
    run_sum: Tensor | None = None
    # bytes per (x, centre) pair: the distance block and one work buffer
    for r0, r1, last, d2 in distance_blocks(x, prep, block_bytes, 2 * item):
        bmin = d2.amin(1)
        if bool((bmin < 0).any()):  # rounding below 0 (near-duplicates): clamp, as the formula says
            d2.clamp_(min=0)
            bmin.clamp_(min=0)
        bmin = bmin.to(torch.float64)
        if run_min is None or run_sum is None:
            new_min = bmin
            run_sum = torch.zeros(len(neg_a), r1 - r0, dtype=torch.float64, device=device)
        else:
            new_min = torch.minimum(run_min, bmin)
            run_sum.mul_(torch.exp((run_min - new_min)[None] * neg_a_t))
        run_min = new_min
        if work is None or work.numel() < d2.numel():
            work = torch.empty(d2.numel(), dtype=dtype, device=device)
        buf = work[: d2.numel()].view_as(d2)
        for k, a in enumerate(neg_a):
            # exp(-a (d2 - min)) <= 1: shifting by the row's minimum distance never overflows, for any sigma;
            # clamping far tails (where exp underflows anyway) avoids exp's slow denormal path (~5x slower)
            shift = (new_min * -a).to(dtype)[:, None]
            torch.add(shift, d2, alpha=a, out=buf).clamp_(min=exp_floor).exp_()
            run_sum[k] += buf.sum(1).to(torch.float64)
        if last:
            norm = -math.log(n_c) - dim * torch.log(sig * math.sqrt(2 * math.pi))
            out[:, r0:r1] = run_sum.log() + run_min[None] * neg_a_t + norm.to(device)[:, None]
            if nearest is not None:
                nearest[r0:r1] = run_min
            run_min = run_sum = None
    return out


# ------------------------------------------------------------------------------------------- public API
def parzen_log_likelihood(
    x: Tensor,
    centers: Tensor,
    sigmas: Sequence[float] | Tensor,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    precision: str = "float64",
) -> Tensor:
    """Per-point Gaussian Parzen log-likelihood (nats), shape [len(sigmas), len(x)], float64 on x's device.

    ``precision="float64"`` (the reported mode): distances and accumulation in float64, exact to ~1e-12 nats.
    ``precision="float32"`` (monitoring): float32 matrix product and exponentials, float64 sums.
    Memory is bounded by ``block_bytes`` (roughly), whatever the sizes of x and centers.
    """
    check_pair(x, centers)
    dtype = check_precision(precision)
    sig = _check_sigmas(sigmas)
    check_block_bytes(block_bytes)
    return _log_likelihood(x, prepare(centers, dtype, x.device), sig, block_bytes)


def select_sigma(
    valid: Tensor, centers: Tensor, grid: Sequence[float] = SIGMA_GRID, **kw: object
) -> tuple[float, Tensor]:
    """The sigma of ``grid`` with the highest mean log-likelihood on ``valid``, and the mean LL per sigma."""
    sig = _check_sigmas(grid)
    means = parzen_log_likelihood(valid, centers, sig, **kw).mean(1)
    best = int(torch.argmax(means))
    return float(sig[best]), means


@dataclass(frozen=True)
class ParzenResult:
    """Outcome of the paper's protocol: mean test LL ± standard error at the chosen sigma."""

    log_likelihood: float
    standard_error: float
    sigma: float
    n_samples: int
    n_valid: int
    n_test: int
    mean_ll_per_sigma: list[float] = field(default_factory=list)
    nearest_sq_dist: float | None = None  # mean over test points of the squared distance to the nearest sample

    def to_dict(self) -> dict[str, object]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def parzen_protocol(
    samples: Tensor,
    valid: Tensor | None,
    test: Tensor,
    *,
    grid: Sequence[float] = SIGMA_GRID,
    sigma: float | None = None,
    precision: str = "float64",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> ParzenResult:
    """The 2014 protocol: pick sigma on ``valid`` (unless ``sigma`` is given), then score ``test``.

    Standard error = std(LL, ddof=0) / sqrt(n_test). With ``sigma`` given, ``valid`` is unused (may be None),
    ``n_valid`` is 0 and ``mean_ll_per_sigma`` is empty. Everything runs on ``test``'s device.
    """
    dtype = check_precision(precision)
    check_block_bytes(block_bytes)
    check_points(samples, "samples")
    check_pair(test, samples, "test", "samples", centers_checked=True)
    if sigma is None and valid is None:
        raise InputError("valid is None; give validation points to choose sigma, or give sigma")
    if sigma is None and valid is not None:
        check_pair(valid, samples, "valid", "samples", centers_checked=True)
    grid_t = _check_sigmas(grid) if sigma is None else _check_sigmas([sigma])
    prep = prepare(samples, dtype, test.device)
    per_sigma: list[float] = []
    n_valid = 0
    if sigma is None and valid is not None:
        means = _log_likelihood(valid.to(test.device), prep, grid_t, block_bytes).mean(1)
        sigma = float(grid_t[int(torch.argmax(means))])
        per_sigma = means.tolist()
        n_valid = valid.shape[0]
    sigma = float(grid_t[0]) if sigma is None else float(sigma)  # (sigma given: grid_t == [sigma])
    nearest = torch.empty(test.shape[0], dtype=torch.float64, device=test.device)
    ll = _log_likelihood(test, prep, torch.tensor([sigma], dtype=torch.float64), block_bytes, nearest)[0]
    return ParzenResult(
        log_likelihood=float(ll.mean()),
        standard_error=float(ll.std(unbiased=False) / math.sqrt(ll.numel())),
        sigma=sigma,
        n_samples=samples.shape[0],
        n_valid=n_valid,
        n_test=test.shape[0],
        mean_ll_per_sigma=per_sigma,
        nearest_sq_dist=float(nearest.mean()),
    )
