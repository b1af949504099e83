"""Gaussian Parzen-window log-likelihood of the 2014 paper (``parzen_ll.py``), exact and blocked.

LL(x) = logsumexp_j(-||x - c_j||^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi)), in nats per point.

One matrix product per (x block, centre block) gives ||x||^2 - 2 x.c + ||c||^2 (clamped at 0); the block is
reused for every sigma, and a streaming log-sum-exp (running minimum distance + running sum) carries the result
across centre blocks, so no full N x M matrix is ever allocated.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from advnets.errors import UserError

__all__ = [
    "SIGMA_GRID",
    "ParzenInputError",
    "ParzenLogLikelihood",
    "ParzenResult",
    "nearest_neighbours",
    "parzen_log_likelihood",
    "parzen_protocol",
    "select_sigma",
]

SIGMA_GRID: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))
"""The paper's bandwidth grid: numpy.logspace(-1, 0, 10) = 0.1 ... 1.0."""

DEFAULT_BLOCK_BYTES = 256 * 2**20
PRECISIONS = ("float64", "float32")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class ParzenInputError(UserError, ValueError):
    """Bad input to the Parzen estimator (a ``ValueError``, and a ``UserError`` for the CLI)."""


# --------------------------------------------------------------------------------------------------- checks
def _check_points(t: Tensor, name: str) -> None:
    if not isinstance(t, Tensor):
        raise ParzenInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ParzenInputError(f"{name} must be 2-D [points, features], got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ParzenInputError(f"{name} is empty (shape {tuple(t.shape)}); at least one point and one feature")
    if t.is_complex() or t.dtype == torch.bool:
        raise ParzenInputError(f"{name} has dtype {t.dtype}; a real (floating point or integer) tensor is allowed")
    if t.is_floating_point() and not bool(torch.isfinite(t.sum())):  # one cheap pass; exact count only if bad
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ParzenInputError(
                f"{name} contain NaN/inf ({bad} non-finite values, e.g. a diverged generator); "
                "all values must be finite"
            )


def _check_pair(
    x: Tensor, centers: Tensor, x_name: str = "x", c_name: str = "centers", *, centers_checked: bool = False
) -> None:
    _check_points(x, x_name)
    if not centers_checked:
        _check_points(centers, c_name)
    if x.shape[1] != centers.shape[1]:
        raise ParzenInputError(
            f"{x_name} has dimension {x.shape[1]} but {c_name} has dimension {centers.shape[1]}; they must match"
        )


def _check_precision(precision: str) -> torch.dtype:
    if precision not in _DTYPES:
        raise ParzenInputError(f"precision={precision!r} is not allowed; use one of {PRECISIONS}")
    return _DTYPES[precision]


def _check_sigmas(sigmas: Sequence[float] | Tensor | float) -> Tensor:
    """Sigmas as a 1-D float64 CPU tensor, each finite and > 0."""
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ParzenInputError(f"sigmas={sigmas!r} is not a sequence of numbers") from err
    if s.numel() == 0:
        raise ParzenInputError("sigmas is empty; give at least one bandwidth > 0")
    bad = s[~torch.isfinite(s) | (s <= 0)]
    if bad.numel():
        raise ParzenInputError(f"sigma={bad[0].item()!r} is not allowed; every sigma must be finite and > 0")
    return s


def _check_block_bytes(block_bytes: int) -> int:
    if not isinstance(block_bytes, int) or block_bytes <= 0:
        raise ParzenInputError(f"block_bytes={block_bytes!r} is not allowed; a positive integer number of bytes")
    return block_bytes


@contextlib.contextmanager
def _full_fp32_matmul() -> Iterator[None]:
    """Disable TF32 / reduced-precision float32 matmuls for the duration; restore the caller's settings."""
    old_precision = torch.get_float32_matmul_precision()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_precision)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


# ------------------------------------------------------------------------------------------ shared kernel
def _block_shape(n_x: int, n_c: int, bytes_per_pair: int, block_bytes: int) -> tuple[int, int]:
    """(rows of x, rows of centres) per block so that one block's work buffers fit in ``block_bytes``."""
    pairs = max(1, block_bytes // bytes_per_pair)
    bc = min(n_c, pairs)  # prefer whole rows of centres: fewer streaming updates
    bx = max(1, min(n_x, pairs // bc))
    return bx, bc


@dataclass(frozen=True)
class _Prepared:
    """Centres ready for the kernel: augmented rows [-2(c - mu), 1, ||c - mu||^2] in the compute dtype."""

    aug: Tensor
    mu: Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.aug.dtype


def _prepare(centers: Tensor, dtype: torch.dtype, device: torch.device) -> _Prepared:
    """Translate by the centres' mean (distances unchanged, less cancellation) and augment for one matmul."""
    c64 = centers.detach().to(device=device, dtype=torch.float64)
    mu = c64.mean(0)
    c = (c64 - mu).to(dtype)
    del c64
    aug = torch.empty(c.shape[0], c.shape[1] + 2, dtype=dtype, device=device)
    torch.mul(c, -2, out=aug[:, :-2])
    aug[:, -2] = 1
    aug[:, -1] = c.pow(2).sum(1)
    if not bool(torch.isfinite(aug[:, -1]).all()):
        raise ParzenInputError(f"centers are too large to square in {dtype}; rescale the data")
    return _Prepared(aug, mu.to(dtype))


def _distance_blocks(
    x: Tensor, prep: _Prepared, block_bytes: int, bytes_per_pair: int
) -> Iterator[tuple[int, int, bool, Tensor]]:
    """Yield ``(row0, row1, last_centre_block, d2)``: squared distances of x[row0:row1] to one centre block.

    d2 = ||x||^2 - 2 x.c + ||c||^2 (both translated by the centres' mean) comes from ONE matrix product of
    augmented rows [x, ||x||^2, 1] and [-2c, 1, ||c||^2] in the compute dtype, TF32 off. It is NOT clamped at 0:
    callers clamp what they use. ``d2`` lives in a buffer reused for the next block: consume it before
    advancing. Centre blocks of one x block come consecutively; ``last_centre_block`` marks a row block's end.
    """
    n_x, dim = x.shape
    n_c = prep.aug.shape[0]
    dtype, dev = prep.dtype, prep.aug.device
    bx, bc = _block_shape(n_x, n_c, bytes_per_pair, block_bytes)
    flat = torch.empty(bx * bc, dtype=dtype, device=dev)
    x_aug = torch.empty(bx, dim + 2, dtype=dtype, device=dev)
    for i0 in range(0, n_x, bx):
        rows = min(bx, n_x - i0)
        xa = x_aug[:rows]
        torch.sub(x[i0 : i0 + rows].to(dtype), prep.mu, out=xa[:, :dim])
        xa[:, dim] = xa[:, :dim].pow(2).sum(1)
        xa[:, dim + 1] = 1
        for j0 in range(0, n_c, bc):
            cb = prep.aug[j0 : j0 + bc]
            d2 = flat[: rows * cb.shape[0]].view(rows, cb.shape[0])
            with _full_fp32_matmul():
                torch.mm(xa, cb.T, out=d2)
            yield i0, i0 + rows, j0 + bc >= n_c, d2


def _log_likelihood(x: Tensor, prep: _Prepared, sig: Tensor, block_bytes: int, nearest: Tensor | None = None) -> Tensor:
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
    for r0, r1, last, d2 in _distance_blocks(x, prep, block_bytes, 2 * item):
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
    _check_pair(x, centers)
    dtype = _check_precision(precision)
    sig = _check_sigmas(sigmas)
    _check_block_bytes(block_bytes)
    return _log_likelihood(x, _prepare(centers, dtype, x.device), sig, block_bytes)


def select_sigma(
    valid: Tensor, centers: Tensor, grid: Sequence[float] = SIGMA_GRID, **kw: object
) -> tuple[float, Tensor]:
    """The sigma of ``grid`` with the highest mean log-likelihood on ``valid``, and the mean LL per sigma."""
    sig = _check_sigmas(grid)
    means = parzen_log_likelihood(valid, centers, sig, **kw).mean(1)
    best = int(torch.argmax(means))
    return float(sig[best]), means


def nearest_neighbours(
    x: Tensor,
    refs: Tensor,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    precision: str = "float64",
) -> tuple[Tensor, Tensor]:
    """Index into ``refs`` and Euclidean distance (float64) of each point's nearest reference, on x's device.

    The search uses the Parzen estimator's blocked distance kernel; the returned distance is then recomputed
    exactly from the difference to the chosen reference (the expanded form loses ~sqrt(eps) near 0).
    """
    _check_pair(x, refs, "x", "refs")
    dtype = _check_precision(precision)
    _check_block_bytes(block_bytes)
    x, refs = x.detach(), refs.detach().to(x.device)
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    best: Tensor | None = None
    best_idx: Tensor | None = None
    j0 = 0
    item = torch.finfo(dtype).bits // 8
    for r0, r1, last, d2 in _distance_blocks(x, _prepare(refs, dtype, x.device), block_bytes, item):
        val, arg = d2.min(1)
        arg = arg + j0
        if best is None or best_idx is None:
            best, best_idx = val, arg
        else:
            better = val < best  # strict: ties keep the lower index, like argmin
            best = torch.where(better, val, best)
            best_idx = torch.where(better, arg, best_idx)
        j0 += d2.shape[1]
        if last:
            idx[r0:r1] = best_idx
            best = best_idx = None
            j0 = 0
    dist = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = max(1, block_bytes // (8 * x.shape[1]))
    for r0 in range(0, x.shape[0], step):
        diff = x[r0 : r0 + step].to(torch.float64) - refs[idx[r0 : r0 + step]].to(torch.float64)
        dist[r0 : r0 + step] = diff.pow(2).sum(1).sqrt()
    return idx, dist


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
    dtype = _check_precision(precision)
    _check_block_bytes(block_bytes)
    _check_points(samples, "samples")
    _check_pair(test, samples, "test", "samples", centers_checked=True)
    if sigma is None and valid is None:
        raise ParzenInputError("valid is None; give validation points to choose sigma, or give sigma")
    if sigma is None and valid is not None:
        _check_pair(valid, samples, "valid", "samples", centers_checked=True)
    grid_t = _check_sigmas(grid) if sigma is None else _check_sigmas([sigma])
    prep = _prepare(samples, dtype, test.device)
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


class ParzenLogLikelihood(Metric):
    """Streaming Parzen log-likelihood against fixed centres at one sigma; DDP-safe (sum-reduced states).

    ``compute()`` returns ``{"log_likelihood": mean, "standard_error": std(ddof=0) / sqrt(n)}`` (float64).
    Under DDP every rank must hold the same centres; each rank updates with its share of the points.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    ll_sum: Tensor
    ll_sq_sum: Tensor
    count: Tensor
    centers: Tensor

    def __init__(
        self,
        centers: Tensor,
        sigma: float,
        precision: str = "float64",
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        _check_points(centers, "centers")
        self.sigma = float(_check_sigmas([sigma])[0])
        self.precision = precision
        _check_precision(precision)
        self.block_bytes = _check_block_bytes(block_bytes)
        self.register_buffer("centers", centers.detach().clone(), persistent=False)
        self._prep: _Prepared | None = None
        self._prep_key: tuple[object, ...] | None = None
        self.add_state("ll_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ll_sq_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> ParzenLogLikelihood:
        """Move the centres with the module, but never let a module-wide cast (.half(), bf16) quantise them."""
        old = self.centers
        out = super()._apply(fn, *args, **kwargs)
        if self.centers.dtype != old.dtype:
            self._buffers["centers"] = old.to(self.centers.device)
        return out

    def update(self, x: Tensor) -> None:
        """Score a batch of points against the centres."""
        _check_pair(x, self.centers, centers_checked=True)
        c = self.centers
        key = (c.data_ptr(), c._version, c.device, x.device)
        if self._prep_key != key:  # prepare the centres once, not per batch
            self._prep = _prepare(c, _DTYPES[self.precision], x.device)
            self._prep_key = key
        ll = _log_likelihood(x, self._prep, torch.tensor([self.sigma], dtype=torch.float64), self.block_bytes)[0]
        ll = ll.to(self.ll_sum.device)
        self.ll_sum += ll.sum()
        self.ll_sq_sum += ll.pow(2).sum()
        self.count += ll.numel()

    def compute(self) -> dict[str, Tensor]:
        """Mean log-likelihood and its standard error."""
        n = self.count.to(torch.float64)
        mean = self.ll_sum / n
        var = (self.ll_sq_sum / n - mean.pow(2)).clamp(min=0)
        return {"log_likelihood": mean, "standard_error": var.sqrt() / n.sqrt()}
