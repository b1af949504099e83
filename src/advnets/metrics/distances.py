"""Squared Euclidean distances between point sets in bounded blocks, and the exact nearest-neighbour search on them.

One matrix product of augmented rows [x, ||x||^2, 1] . [-2c, 1, ||c||^2] per block (both sets translated by the
reference set's mean, TF32 off) gives the distances of a block of points to a block of references; memory is
bounded by ``block_bytes`` whatever the sizes. The Parzen estimator (``advnets.metrics.parzen``) streams its
log-sum-exp over these blocks; ``nearest_neighbours`` keeps each point's closest reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from advnets.errors import UserError

DEFAULT_BLOCK_BYTES = 256 * 2**20
PRECISIONS = ("float64", "float32")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


class InputError(UserError, ValueError):
    """Bad input to the distance kernel or an estimator built on it (a ``ValueError``, and a ``UserError`` for
    the CLI)."""


# --------------------------------------------------------------------------------------------------- checks
def check_points(t: Tensor, name: str) -> None:
    if not isinstance(t, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise InputError(f"{name} must be 2-D [points, features], got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {tuple(t.shape)}); at least one point and one feature")
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} has dtype {t.dtype}; a real (floating point or integer) tensor is allowed")
    if t.is_floating_point() and not bool(torch.isfinite(t.sum())):  # one cheap pass; exact count only if bad
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise InputError(
                f"{name} contain NaN/inf ({bad} non-finite values, e.g. a diverged generator); "
                "all values must be finite"
            )


def check_pair(
    x: Tensor, centers: Tensor, x_name: str = "x", c_name: str = "centers", *, centers_checked: bool = False
) -> None:
    check_points(x, x_name)
    if not centers_checked:
        check_points(centers, c_name)
    if x.shape[1] != centers.shape[1]:
        raise InputError(
            f"{x_name} has dimension {x.shape[1]} but {c_name} has dimension {centers.shape[1]}; they must match"
        )


def check_precision(precision: str) -> torch.dtype:
    if precision not in DTYPES:
        raise InputError(f"precision={precision!r} is not allowed; use one of {PRECISIONS}")
    return DTYPES[precision]


def check_block_bytes(block_bytes: int) -> int:
    if not isinstance(block_bytes, int) or block_bytes <= 0:
        raise InputError(f"block_bytes={block_bytes!r} is not allowed; a positive integer number of bytes")
    return block_bytes


@contextlib.contextmanager
def full_fp32_matmul() -> Iterator[None]:
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


# ------------------------------------------------------------------------------------------------ kernel
def block_shape(n_x: int, n_c: int, bytes_per_pair: int, block_bytes: int) -> tuple[int, int]:
    """(rows of x, rows of centres) per block so that one block's work buffers fit in ``block_bytes``."""
    pairs = max(1, block_bytes // bytes_per_pair)
    bc = min(n_c, pairs)  # prefer whole rows of centres: fewer streaming updates
    bx = max(1, min(n_x, pairs // bc))
    return bx, bc


@dataclass(frozen=True)
class Prepared:
    """Centres ready for the kernel: augmented rows [-2(c - mu), 1, ||c - mu||^2] in the compute dtype."""

    aug: Tensor
    mu: Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.aug.dtype


def prepare(centers: Tensor, dtype: torch.dtype, device: torch.device) -> Prepared:
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
        raise InputError(f"centers are too large to square in {dtype}; rescale the data")
    return Prepared(aug, mu.to(dtype))


def distance_blocks(
    x: Tensor, prep: Prepared, block_bytes: int, bytes_per_pair: int
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
    bx, bc = block_shape(n_x, n_c, bytes_per_pair, block_bytes)
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
            with full_fp32_matmul():
                torch.mm(xa, cb.T, out=d2)
            yield i0, i0 + rows, j0 + bc >= n_c, d2


# ---------------------------------------------------------------------------------------- nearest search
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
    check_pair(x, refs, "x", "refs")
    dtype = check_precision(precision)
    check_block_bytes(block_bytes)
    x, refs = x.detach(), refs.detach().to(x.device)
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    best: Tensor | None = None
    best_idx: Tensor | None = None
    j0 = 0
    item = torch.finfo(dtype).bits // 8
    for r0, r1, last, d2 in distance_blocks(x, prepare(refs, dtype, x.device), block_bytes, item):
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
