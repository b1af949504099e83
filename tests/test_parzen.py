"""Parzen-window estimator and the distance kernel under it: exactness against brute force and scikit-learn,
blocking, the nearest-neighbour search, errors, MNIST."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from advnets.metrics.distances import nearest_neighbours
from advnets.metrics.parzen import SIGMA_GRID, ParzenResult, parzen_log_likelihood, parzen_protocol, select_sigma

GRID = torch.tensor(SIGMA_GRID, dtype=torch.float64)


def brute_force(x: torch.Tensor, c: torch.Tensor, sigmas) -> torch.Tensor:
    """Reference: explicit differences and torch.logsumexp, all in float64. Shape [len(sigmas), len(x)]."""
    x, c = x.double(), c.double()
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    d2 = (x[:, None] - c[None]).pow(2).sum(-1)
    lse = torch.logsumexp(-d2[None] / (2 * s[:, None, None] ** 2), dim=-1)
    return lse - math.log(c.shape[0]) - c.shape[1] * torch.log(s * math.sqrt(2 * math.pi))[:, None]


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    c = torch.rand(300, 20, generator=g, dtype=torch.float64)
    x = torch.rand(200, 20, generator=g, dtype=torch.float64)
    x[:5] = c[:5]  # exact duplicates: distance 0, rounding may go below 0 and must be clamped
    return x, c


def test_sigma_grid() -> None:
    assert SIGMA_GRID == tuple(np.logspace(-1, 0, 10))
    assert SIGMA_GRID[2] == pytest.approx(0.1668, abs=1e-4)


def test_matches_brute_force_float64(data) -> None:
    x, c = data
    got = parzen_log_likelihood(x, c, SIGMA_GRID)
    ref = brute_force(x, c, SIGMA_GRID)
    assert got.shape == (len(SIGMA_GRID), len(x)) and got.dtype == torch.float64
    assert (got - ref).abs().max().item() < 1e-6


def test_float32_inputs_reported_mode_is_float64_exact(data) -> None:
    x, c = (t.float() for t in data)
    got = parzen_log_likelihood(x, c, SIGMA_GRID)
    assert (got - brute_force(x, c, SIGMA_GRID)).abs().max().item() < 1e-6


def test_float32_monitor_mode(data) -> None:
    x, c = data
    got = parzen_log_likelihood(x, c, SIGMA_GRID, precision="float32")
    assert (got - brute_force(x, c, SIGMA_GRID)).abs().max().item() < 5e-3


def test_far_points_and_offset_data() -> None:
    """Far tails (exp underflow) and data far from the origin (cancellation) stay exact."""
    g = torch.Generator().manual_seed(1)
    c = 1000 + torch.rand(100, 10, generator=g, dtype=torch.float64)
    x = torch.cat([1000 + torch.rand(20, 10, generator=g, dtype=torch.float64), c[:3] + 5.0])
    got = parzen_log_likelihood(x, c, SIGMA_GRID)
    assert torch.isfinite(got).all()
    assert (got - brute_force(x, c, SIGMA_GRID)).abs().max().item() < 1e-6


def test_matches_sklearn_kernel_density() -> None:
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(0)
    c = rng.random((400, 5))
    x = rng.random((150, 5)) * 1.2 - 0.1
    sigmas = [0.3, 0.4642, 0.6, 1.0]
    got = parzen_log_likelihood(torch.from_numpy(x), torch.from_numpy(c), sigmas).numpy()
    for k, s in enumerate(sigmas):
        kde = KernelDensity(kernel="gaussian", bandwidth=s, atol=0, rtol=0).fit(c)
        np.testing.assert_allclose(got[k], kde.score_samples(x), rtol=0, atol=1e-8)


def test_select_sigma_picks_reference_argmax(data) -> None:
    x, c = data
    x = x * 0.9 + 0.05  # move the optimum inside the grid
    sigma, means = select_sigma(x, c)
    ref = brute_force(x, c, SIGMA_GRID).mean(1)
    assert means.shape == (len(SIGMA_GRID),)
    assert sigma == SIGMA_GRID[int(ref.argmax())]
    assert (means - ref).abs().max().item() < 1e-6


@pytest.mark.parametrize("block_bytes", [1, 16 * 7, 16 * 250, 16 * 9000])
def test_block_size_independent(data, block_bytes: int) -> None:
    x, c = data[0][:60], data[1][:70]
    default = parzen_log_likelihood(x, c, SIGMA_GRID)
    got = parzen_log_likelihood(x, c, SIGMA_GRID, block_bytes=block_bytes)
    assert (got - default).abs().max().item() < 1e-9
    idx, dist = nearest_neighbours(x, c, block_bytes=block_bytes)
    idx0, dist0 = nearest_neighbours(x, c)
    assert torch.equal(idx, idx0) and (dist - dist0).abs().max().item() < 1e-9


def test_nearest_neighbours_matches_argmin(data) -> None:
    x, c = data
    idx, dist = nearest_neighbours(x, c, block_bytes=16 * 1000)
    d2 = (x[:, None] - c[None]).pow(2).sum(-1)
    assert torch.equal(idx, d2.argmin(1))
    assert (dist - d2.min(1).values.sqrt()).abs().max().item() < 1e-6
    assert torch.all(dist[:5] < 1e-6)  # the duplicates


def test_requires_grad_inputs_and_uint8() -> None:
    c = torch.rand(30, 4, requires_grad=True)
    x = torch.rand(10, 4, requires_grad=True)
    assert not parzen_log_likelihood(x, c, [0.5]).requires_grad
    c8 = torch.randint(0, 256, (30, 4), dtype=torch.uint8)
    got = parzen_log_likelihood(c8[:5], c8, [20.0])
    assert (got - brute_force(c8[:5], c8, [20.0])).abs().max().item() < 1e-6


def test_tf32_setting_restored() -> None:
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        parzen_log_likelihood(torch.rand(5, 3), torch.rand(7, 3), [0.5], precision="float32")
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(old)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 4), [0.5]), "dimension 3 .* dimension 4"),
        (lambda: parzen_log_likelihood(torch.rand(0, 3), torch.rand(5, 3), [0.5]), "x is empty"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(0, 3), [0.5]), "centers is empty"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [0.0]), "sigma=0.0 .* > 0"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [-1.0]), "sigma=-1.0"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [math.nan]), "sigma=nan .* finite"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [math.inf]), "sigma=inf"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), []), "sigmas is empty"),
        (lambda: parzen_log_likelihood(torch.rand(5), torch.rand(5, 3), [0.5]), "x must be 2-D"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(2, 5, 3), [0.5]), "centers must be 2-D"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [0.5], precision="half"), "precision"),
        (lambda: parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [0.5], block_bytes=0), "block_bytes"),
        (
            lambda: parzen_log_likelihood(torch.tensor([[0.0, math.nan]]), torch.rand(5, 2), [0.5]),
            "x contain NaN/inf",
        ),
        (
            lambda: parzen_protocol(torch.full((5, 3), math.nan), torch.rand(4, 3), torch.rand(4, 3)),
            "samples contain NaN/inf",
        ),
        (
            lambda: parzen_protocol(torch.rand(5, 3), torch.rand(4, 3), torch.tensor([[math.inf, 0.0, 0.0]])),
            "test contain NaN/inf",
        ),
        (lambda: parzen_protocol(torch.rand(5, 3), torch.rand(4, 2), torch.rand(4, 3)), "valid has dimension 2"),
        (lambda: parzen_protocol(torch.rand(5, 3), None, torch.rand(4, 3)), "valid is None"),
        (lambda: nearest_neighbours(torch.rand(5, 3), torch.rand(5, 2)), "refs has dimension 2"),
        (lambda: nearest_neighbours(torch.rand(5, 3), torch.rand(4, 3), precision="half"), "precision"),
    ],
)
def test_bad_input_raises_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_protocol_numbers(data) -> None:
    x, c = data
    valid, test = x[:80], x[80:]
    res = parzen_protocol(c, valid, test)
    ref_sigma = SIGMA_GRID[int(brute_force(valid, c, SIGMA_GRID).mean(1).argmax())]
    ll = brute_force(test, c, [ref_sigma])[0]
    assert isinstance(res, ParzenResult)
    assert res.sigma == ref_sigma
    assert res.log_likelihood == pytest.approx(ll.mean().item(), abs=1e-6)
    assert res.standard_error == pytest.approx(ll.std(unbiased=False).item() / math.sqrt(len(test)), abs=1e-9)
    assert (res.n_samples, res.n_valid, res.n_test) == (300, 80, 120)
    assert len(res.mean_ll_per_sigma) == len(SIGMA_GRID)
    d = res.to_dict()
    assert d["sigma"] == res.sigma and json.loads(json.dumps(d)) == d
    fixed = parzen_protocol(c, None, test, sigma=ref_sigma)
    assert fixed.log_likelihood == pytest.approx(res.log_likelihood, abs=1e-12)
    assert fixed.n_valid == 0 and fixed.mean_ll_per_sigma == []


def test_errors_are_user_errors() -> None:
    from advnets.errors import UserError
    from advnets.metrics.distances import InputError

    assert issubclass(InputError, ValueError) and issubclass(InputError, UserError)
    with pytest.raises(InputError):
        parzen_log_likelihood(torch.rand(5, 3), torch.rand(5, 3), [-1.0])


@pytest.mark.skipif(
    "ADVNETS_DATA_DIR" not in os.environ,
    reason="real-MNIST Parzen guard needs ADVNETS_DATA_DIR (the folder containing MNIST/raw/)",
)
def test_mnist_real_samples_regression() -> None:
    """10,000 real training images as 'samples' give ~241 nats at sigma 0.1668 (the protocol's sanity figure)."""
    from torchvision.datasets import MNIST

    def flat(train: bool) -> torch.Tensor:
        ds = MNIST(root=os.environ["ADVNETS_DATA_DIR"], train=train, download=False)
        return ds.data.reshape(len(ds.data), -1).to(torch.float32) / 255

    train, test = flat(True), flat(False)
    res = parzen_protocol(train[:10000], train[50000:51000], test, precision="float64")
    assert res.n_test == 10000
    assert res.sigma == pytest.approx(SIGMA_GRID[2])
    assert 236 <= res.log_likelihood <= 246, res


def test_protocol_chooses_sigma_on_valid_never_test() -> None:
    """Validation points sit close to the centres (a small sigma wins), test points far from them (a wide one
    wins): the protocol reports validation's sigma and its per-sigma means, and scores test at that sigma."""
    g = torch.Generator().manual_seed(2)
    c = torch.rand(200, 10, generator=g, dtype=torch.float64)
    valid = c[:100] + 0.02 * torch.randn(100, 10, generator=g, dtype=torch.float64)
    test = 2 * torch.rand(100, 10, generator=g, dtype=torch.float64) - 0.5
    on_valid, on_test = brute_force(valid, c, GRID).mean(1), brute_force(test, c, GRID).mean(1)
    sigma_valid, sigma_test = SIGMA_GRID[int(on_valid.argmax())], SIGMA_GRID[int(on_test.argmax())]
    assert sigma_valid < sigma_test  # the data tell the two choices apart
    res = parzen_protocol(c, valid, test)
    assert res.sigma == sigma_valid, (res.sigma, sigma_valid, sigma_test)
    assert torch.allclose(torch.tensor(res.mean_ll_per_sigma, dtype=torch.float64), on_valid, atol=1e-6)
    assert res.log_likelihood == pytest.approx(brute_force(test, c, [sigma_valid])[0].mean().item(), abs=1e-6)
