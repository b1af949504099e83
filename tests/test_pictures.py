"""Pictures: values in [0, 1] shown as they are; contrast-normalised images as pylearn2's viewer showed them;
small images enlarged pixel by pixel to at least 400 px; Figures 2 and 3 labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advnets.pictures import (
    MIN_LABELLED_CELL,
    enlarge,
    save_grid,
    save_interpolation,
    save_nearest_neighbours,
    scale_for,
    to_images,
)


def test_unit_range_pixels_are_shown_unchanged() -> None:
    x = torch.rand(4, 12)
    assert torch.equal(to_images(x, (3, 2, 2)), x.reshape(4, 3, 2, 2))


def test_contrast_normalised_images_are_scaled_by_their_largest_value() -> None:
    x = torch.tensor([[-4.0, 2.0, 0.0, 1.0], [0.5, -0.25, 0.0, 0.25]])
    shown = to_images(x, (1, 2, 2)).flatten(1)
    torch.testing.assert_close(shown[0], torch.tensor([0.0, 0.75, 0.5, 0.625]))  # x / 4 mapped [-1, 1] -> [0, 1]
    torch.testing.assert_close(shown[1], torch.tensor([1.0, 0.25, 0.5, 0.75]))  # x / 0.5


def _png(path: Path) -> torch.Tensor:
    """A PNG as a [h, w, 3] uint8 tensor."""
    with Image.open(path) as picture:
        return torch.from_numpy(np.asarray(picture.convert("RGB")).copy())


@pytest.mark.parametrize("side,factor", [(8, 5), (28, 2), (48, 1)])
def test_grids_are_enlarged_pixel_by_pixel_to_at_least_400_px(tmp_path: Path, side: int, factor: int) -> None:
    x = torch.rand(100, side * side)
    path = save_grid(x, (1, side, side), tmp_path / "grid.png")
    cell = side * factor + 2
    assert scale_for(10, side) == factor and _png(path).shape[:2] == (10 * cell + 2, 10 * cell + 2)
    assert 10 * cell + 2 >= 400
    first = _png(path)[2 : 2 + side * factor, 2 : 2 + side * factor, 0]  # the first image, without its padding
    expected = (x[0].view(side, side) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    assert torch.equal(first, enlarge(expected.view(1, 1, side, side), factor)[0, 0])  # each pixel a square block


def test_nearest_neighbours_and_interpolation_carry_a_label_band_above_their_images(tmp_path: Path) -> None:
    samples, neighbours = torch.rand(30, 64), torch.rand(30, 64)
    k = scale_for(12, 8, MIN_LABELLED_CELL)
    nearest = _png(save_nearest_neighbours(samples, neighbours, (1, 8, 8), tmp_path / "nearest.png"))
    pair = 2 * (8 * k + 2) + 2
    assert nearest.shape[1] == 6 * pair + 5 * 6 >= 400  # 6 pairs a row, 6 px between pairs
    images = nearest.shape[0] - 5 * (8 * k + 4)  # where the 5 rows of pairs start, each pair framed by 2 px
    assert images > 20  # a band above them, high enough for two lines of text
    band = nearest[:images]
    assert (band < 128).any() and (band < 128).float().mean() < 0.2  # ink on white: the labels
    top_left = nearest[images + 2 : images + 2 + 8 * k, 2 : 2 + 8 * k, 0]  # the first sample, below the band
    expected = (samples[0].view(8, 8) * 255 + 0.5).to(torch.uint8)
    assert torch.equal(top_left, enlarge(expected.view(1, 1, 8, 8), k)[0, 0])

    steps = 7
    k = scale_for(steps, 8, MIN_LABELLED_CELL)
    line = _png(save_interpolation(torch.rand(3 * steps, 64), (1, 8, 8), tmp_path / "interpolation.png", steps))
    grid = 3 * (8 * k + 2) + 2
    assert line.shape[1] == steps * (8 * k + 2) + 2 >= 400 and line.shape[0] > grid + 20
    band = line[: line.shape[0] - grid]
    assert (band < 128).any() and (band < 128).float().mean() < 0.2  # the title and the z_a -> z_b arrow
