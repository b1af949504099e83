"""Pictures people look at: sample grids, Figure 2 (samples beside their nearest neighbour), Figure 3 (z lines).

Small images are enlarged by an integer factor, each pixel a square block (nearest neighbour), so that every
picture is at least ``MIN_WIDTH`` pixels across; Figures 2 and 3 carry labels saying what their columns are."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from advnets.store import atomic

MIN_WIDTH = 400
"""The least width of a picture's images, side by side, in pixels."""
MIN_LABELLED_CELL = 48
"""The least width of an image in a labelled figure: room for its column's label."""
PADDING = 2
"""White pixels around each image of a grid."""
INK = (0, 0, 0)


def to_images(flat: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Flat pixel rows -> a [n, c, h, w] image batch in [0, 1] on the CPU.

    Rows in [0, 1] are shown as they are; a batch with values outside (e.g. contrast-normalised CIFAR-10) is
    shown as pylearn2's ``adjust_for_viewer`` showed it: each image divided by its largest |value|, then
    [-1, 1] mapped to [0, 1].
    """
    x = flat.detach().float().cpu()
    if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        x = x / x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) * 0.5 + 0.5
    return x.clamp(0, 1).reshape(-1, *shape)


def scale_for(columns: int, width: int, min_cell: int = 1) -> int:
    """The integer enlargement that makes ``columns`` images of ``width`` pixels at least ``MIN_WIDTH`` across
    and each at least ``min_cell`` wide (1 for images that are large already)."""
    return max(1, math.ceil(MIN_WIDTH / (columns * width)), math.ceil(min_cell / width))


def enlarge(images: Tensor, factor: int) -> Tensor:
    """[n, c, h, w] -> [n, c, h * factor, w * factor], each pixel a ``factor`` x ``factor`` block."""
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _grid_picture(images: Tensor, nrow: int) -> Image.Image:
    """Images [n, c, h, w] in [0, 1] as one grid (torchvision's ``make_grid``, white padding), a PIL image."""
    grid = make_grid(images, nrow=nrow, padding=PADDING, pad_value=1.0)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels).convert("RGB")


def _save(picture: Image.Image, path: Path) -> Path:
    with atomic.atomic_open(path, "wb") as handle:
        picture.save(handle, format="png")
    return path


def save_grid(flat: Tensor, shape: tuple[int, int, int], path: Path, nrow: int = 10) -> Path:
    """Save images as one grid PNG, enlarged to at least ``MIN_WIDTH`` pixels across."""
    columns = min(nrow, len(flat)) or 1
    factor = scale_for(columns, shape[2])
    return _save(_grid_picture(enlarge(to_images(flat, shape), factor), nrow), path)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels; Pillow's own font where it is missing."""
    import matplotlib

    try:
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except OSError:
        return ImageFont.load_default(size)


def _font_size(cell: int) -> int:
    return max(11, min(18, cell // 4))


def _with_band(grid: Image.Image, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """``grid`` below a white band ``height`` pixels high, and a pen to label it."""
    picture = Image.new("RGB", (grid.width, grid.height + height), "white")
    picture.paste(grid, (0, height))
    return picture, ImageDraw.Draw(picture)


def _centred(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, font: ImageFont.ImageFont) -> None:
    """``text`` centred on x, its top at y."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((x - (right - left) / 2, y), text, fill=INK, font=font)


def _title(draw: ImageDraw.ImageDraw, width: int, text: str, size: int) -> None:
    """``text`` centred at the top, in the largest size up to ``size`` that fits ``width``."""
    while size > 8 and draw.textlength(text, font=_font(size)) > width - 4:
        size -= 1
    _centred(draw, width / 2, 2, text, _font(size))


def _z_label(draw: ImageDraw.ImageDraw, x: float, y: float, sub: str, size: int, align: str) -> tuple[float, float]:
    """z with subscript ``sub`` at height y, its left end at x (``align='left'``) or its right end at x; returns
    its (left, right) ends."""
    big, small = _font(size + 4), _font(max(9, size * 3 // 4))
    z_width = draw.textlength("z", font=big)
    width = z_width + draw.textlength(sub, font=small)
    left = x if align == "left" else x - width
    draw.text((left, y), "z", fill=INK, font=big)
    draw.text((left + z_width + 1, y + (size + 4) * 0.5), sub, fill=INK, font=small)
    return left, left + width


def save_nearest_neighbours(
    samples: Tensor, neighbours: Tensor, shape: tuple[int, int, int], path: Path, per_row: int = 6
) -> Path:
    """Figure 2 of the paper: each sample followed by its nearest training example, pairs laid out in rows, each
    pair's columns labelled (``sample``, ``nearest``) under a title that says what the nearest one is."""
    factor = scale_for(2 * per_row, shape[2], MIN_LABELLED_CELL)
    pairs = torch.stack([to_images(samples, shape), to_images(neighbours, shape)], dim=1)
    pairs = enlarge(pairs.flatten(0, 1), factor).unflatten(0, (-1, 2))
    tiles = [_grid_picture(pair, nrow=2) for pair in pairs]  # a pair: two images in one white frame
    gap = 3 * PADDING
    columns = min(per_row, len(tiles)) or 1
    rows = -(-len(tiles) // columns)
    tile_w, tile_h = tiles[0].size if tiles else (1, 1)
    grid = Image.new("RGB", (columns * tile_w + (columns - 1) * gap, rows * tile_h), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * (tile_w + gap), (i // columns) * tile_h))
    cell = shape[2] * factor
    size = _font_size(cell)
    font = _font(size)
    line = int(size * 1.5)
    picture, draw = _with_band(grid, 2 * line + PADDING)
    _title(draw, grid.width, "each pair: a sample, then the training image nearest to it", size)
    for column in range(columns):
        left = column * (tile_w + gap) + PADDING
        _centred(draw, left + cell / 2, line + 2, "sample", font)
        _centred(draw, left + cell + PADDING + cell / 2, line + 2, "nearest", font)
    return _save(picture, path)


def interpolation_z(z_start: Tensor, z_end: Tensor, steps: int) -> Tensor:
    """Figure 3 of the paper: ``steps`` points on the line from each ``z_start[i]`` to ``z_end[i]``, row by row.

    Row i holds ``(1 - t) z_start[i] + t z_end[i]`` for t = 0, 1/(steps-1), ..., 1; returns [rows * steps, d].
    """
    t = torch.linspace(0.0, 1.0, steps, device=z_start.device, dtype=z_start.dtype).view(1, steps, 1)
    return ((1 - t) * z_start.unsqueeze(1) + t * z_end.unsqueeze(1)).flatten(0, 1)


def save_interpolation(images: Tensor, shape: tuple[int, int, int], path: Path, steps: int) -> Path:
    """Figure 3: the generator's images along each interpolation, one row per pair of end points, under a title
    and an arrow z_a -> z_b (the first column is G(z_a), the last G(z_b))."""
    factor = scale_for(steps, shape[2], MIN_LABELLED_CELL)
    grid = _grid_picture(enlarge(to_images(images, shape), factor), nrow=steps)
    cell = shape[2] * factor
    size = _font_size(cell)
    line = int(size * 1.5)
    picture, draw = _with_band(grid, line + int(size * 2.2))
    _title(draw, grid.width, "each row: G(z) as z moves on a straight line from one noise vector to another", size)
    y = line + size * 0.1
    _, start = _z_label(draw, PADDING + cell * 0.1, y, "a", size, "left")
    end, _ = _z_label(draw, grid.width - PADDING - cell * 0.1, y, "b", size, "right")
    middle = y + size * 0.9
    head = size * 0.45
    tip = end - size * 0.5
    draw.line([(start + size * 0.5, middle), (tip - head, middle)], fill=INK, width=max(1, size // 8))
    draw.polygon([(tip, middle), (tip - head * 1.6, middle - head), (tip - head * 1.6, middle + head)], fill=INK)
    return _save(picture, path)
