"""Pictures: values in [0, 1] shown as they are; contrast-normalised images as pylearn2's viewer showed them."""

from __future__ import annotations

import torch

from advnets.pictures import to_images


def test_unit_range_pixels_are_shown_unchanged() -> None:
    x = torch.rand(4, 12)
    assert torch.equal(to_images(x, (3, 2, 2)), x.reshape(4, 3, 2, 2))


def test_contrast_normalised_images_are_scaled_by_their_largest_value() -> None:
    x = torch.tensor([[-4.0, 2.0, 0.0, 1.0], [0.5, -0.25, 0.0, 0.25]])
    shown = to_images(x, (1, 2, 2)).flatten(1)
    torch.testing.assert_close(shown[0], torch.tensor([0.0, 0.75, 0.5, 0.625]))  # x / 4 mapped [-1, 1] -> [0, 1]
    torch.testing.assert_close(shown[1], torch.tensor([1.0, 0.25, 0.5, 0.75]))  # x / 0.5
