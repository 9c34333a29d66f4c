"""Fashion-MNIST batches made to look like phone photos after the garment preprocessing (the `robust` recipe).

A photo that went through garment.py still differs from a Fashion-MNIST image: bits of floor or bed left around
the garment, shadows and uneven light, blur, noise and JPEG blocks, a garment turned, squeezed or cut by the
frame, a ragged silhouette where the mask erred, something lying across it, and shoes in pairs. Each of those is a
corruption here, applied to each image of a batch with its own probability (`--corrupt NAME=P`), computed on the
chosen images only, with every draw from the epoch's seeded generator (a resumed epoch corrupts identically).
Images are float (B, 1, 28, 28) in [0, 1], light garments on black.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fashionclf.preprocess import FASHION_MNIST_SIDE as SIDE
from fashionclf.preprocess import OBJECT_THRESHOLD

FOOTWEAR = ("Sandal", "Sneaker", "Ankle boot")  # the classes `pair` shows in pairs, as shoes are photographed

Corruption = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def corrupt(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    probabilities: dict[str, float],
    footwear: torch.Tensor,
) -> torch.Tensor:
    """`pair` (for the labels in `footwear`), then each corruption of CORRUPTIONS, on the images each draws with
    its probability in `probabilities`."""
    if probabilities.get("pair"):
        chosen = (torch.rand(len(images), generator=generator) < probabilities["pair"]) & torch.isin(labels, footwear)
        partners = _partners(labels, generator)[chosen]
        images = _on(images, chosen, lambda x: _pair(x, images[partners], generator))
    for name, corruption in CORRUPTIONS.items():
        if probabilities.get(name):
            chosen = torch.rand(len(images), generator=generator) < probabilities[name]
            images = _on(images, chosen, lambda x: corruption(x, generator))  # noqa: B023 (called at once)
    return images


def _on(images: torch.Tensor, chosen: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    indices = torch.nonzero(chosen).flatten()
    if len(indices) == 0:
        return images
    images = images.clone()
    images[indices] = change(images[indices])
    return images


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.empty(count).uniform_(low, high, generator=generator)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values[:, None, None, None]


def _smooth_field(count: int, generator: torch.Generator, cells: int) -> torch.Tensor:
    """Smooth random fields in [0, 1]: a coarse random grid, upsampled bicubically and normalised."""
    coarse = torch.rand(count, 1, cells, cells, generator=generator)
    field = F.interpolate(coarse, size=(SIDE, SIDE), mode="bicubic", align_corners=False)
    low, high = field.amin((2, 3), keepdim=True), field.amax((2, 3), keepdim=True)
    return (field - low) / (high - low + 1e-6)


def _coordinates() -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-1, 1, SIDE)
    return axis[None, :].expand(SIDE, SIDE), axis[:, None].expand(SIDE, SIDE)


def _boxes(count: int, generator: torch.Generator, area: tuple[float, float]) -> torch.Tensor:
    """bool (N, 1, SIDE, SIDE): a rectangle each, of the given share of the area, aspect 0.3 to 3.3."""
    size = _uniform(count, *area, generator) * SIDE * SIDE
    ratio = torch.exp(_uniform(count, math.log(0.3), math.log(3.3), generator))
    height = (size * ratio).sqrt().round().clamp(1, SIDE)
    width = (size / ratio).sqrt().round().clamp(1, SIDE)
    top = (torch.rand(count, generator=generator) * (SIDE + 1 - height)).floor()
    left = (torch.rand(count, generator=generator) * (SIDE + 1 - width)).floor()
    return _window(top, height, left, width)


def _window(top: torch.Tensor, height: torch.Tensor, left: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    pixel = torch.arange(SIDE).float()[None]
    rows = (pixel >= top[:, None]) & (pixel < (top + height)[:, None])
    cols = (pixel >= left[:, None]) & (pixel < (left + width)[:, None])
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def reframe(images: torch.Tensor, shift: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each object's bounding box brought to the centre of a 28x28 frame, its longest side filling it, as the
    preprocessing frames a photo's garment; optionally shifted by up to `shift` of the object's side. Any
    (N, 1, H, W) in."""
    count, _, height, width = images.shape
    present = images[:, 0] > OBJECT_THRESHOLD
    rows, cols = present.any(2), present.any(1)
    found = rows.any(1)
    row_index, col_index = torch.arange(height).float(), torch.arange(width).float()
    top = torch.where(found, torch.where(rows, row_index, 1e9).amin(1), 0.0)
    bottom = torch.where(found, torch.where(rows, row_index, -1e9).amax(1), height - 1.0)
    left = torch.where(found, torch.where(cols, col_index, 1e9).amin(1), 0.0)
    right = torch.where(found, torch.where(cols, col_index, -1e9).amax(1), width - 1.0)
    side = torch.maximum(bottom - top + 1, right - left + 1)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side / width, (left + right + 1) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = side / height, (top + bottom + 1) / height - 1
    if shift and generator is not None:
        theta[:, 0, 2] += _uniform(count, -shift, shift, generator) * 2 * side / width
        theta[:, 1, 2] += _uniform(count, -shift, shift, generator) * 2 * side / height
    grid = F.affine_grid(theta, [count, 1, SIDE, SIDE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _turned(images: torch.Tensor, degrees: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor) -> torch.Tensor:
    """Rotated and scaled about the centre on a canvas twice the side, so that nothing is clipped."""
    angle = degrees * math.pi / 180
    theta = torch.zeros(len(images), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale_x, -angle.sin() / scale_x
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale_y, angle.cos() / scale_y
    canvas = F.pad(images, (SIDE // 2,) * 4)
    return F.grid_sample(canvas, F.affine_grid(theta, list(canvas.shape), align_corners=False), align_corners=False)


def _partners(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each image, another of its class in the batch (itself where it is the only one)."""
    count = len(labels)
    order = torch.argsort(labels.float() + torch.rand(count, generator=generator) * 0.5)  # by class, shuffled
    following = torch.roll(torch.arange(count), -1)
    same = labels[order][following] == labels[order]
    partners = torch.empty(count, dtype=torch.long)
    partners[order] = torch.where(same, order[following], order)
    return partners


def _pair(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Two items side by side, each turned by up to 90 degrees (a pair of shoes from above), the second mirrored
    half the time and offset a little, re-framed."""
    count = len(first)
    no_scale = torch.ones(count)
    first = reframe(_turned(first, _uniform(count, -90, 90, generator), no_scale, no_scale))
    second = _turned(second, _uniform(count, -90, 90, generator), no_scale, no_scale)
    mirrored = _per_image(torch.rand(count, generator=generator) < 0.5)
    second = reframe(torch.where(mirrored, second.flip(-1), second))
    gap = (_uniform(count, -0.15, 0.15, generator) * SIDE).round().long()
    drop = (_uniform(count, -0.2, 0.2, generator) * SIDE).round().long()
    canvas = torch.zeros(count, 1, 2 * SIDE, 3 * SIDE)
    canvas[:, :, SIDE // 2 : SIDE // 2 + SIDE, SIDE // 2 : SIDE // 2 + SIDE] = first
    rows = (torch.arange(SIDE)[None] + SIDE // 2 + drop[:, None]).clamp(0, 2 * SIDE - 1)[:, :, None]
    cols = (torch.arange(SIDE)[None] + SIDE // 2 + SIDE + gap[:, None]).clamp(0, 3 * SIDE - 1)[:, None, :]
    image = torch.arange(count)[:, None, None]
    canvas[image, 0, rows, cols] = torch.maximum(canvas[image, 0, rows, cols], second[:, 0])
    return reframe(canvas)


def _affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Turned by up to 15 degrees, each axis scaled by up to 10%, re-framed and shifted by up to 6%."""
    count = len(images)
    scale_x, scale_y = (torch.exp(_uniform(count, -0.1, 0.1, generator)) for _ in range(2))
    return reframe(_turned(images, _uniform(count, -15, 15, generator), scale_x, scale_y), 0.06, generator)


def _cut(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Cut by the photo's frame: a window of 70-100% of each side kept, re-framed."""
    count = len(images)
    height, width = _uniform(count, 0.7, 1.0, generator), _uniform(count, 0.7, 1.0, generator)
    top = torch.rand(count, generator=generator) * (1 - height) * SIDE
    left = torch.rand(count, generator=generator) * (1 - width) * SIDE
    return reframe(images * _window(top, height * SIDE, left, width * SIDE).float())


def _edge(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A ragged silhouette, as a mask that erred: the edge grown or eaten in patches."""
    count = len(images)
    garment = (images > OBJECT_THRESHOLD).float()
    patches = (_smooth_field(count, generator, cells=7) > 0.5).float()
    ring_outside = F.max_pool2d(garment, 3, 1, 1) - garment
    grown = torch.maximum(images, F.max_pool2d(images, 3, 1, 1) * ring_outside * patches)
    ring_inside = garment + F.max_pool2d(-garment, 3, 1, 1)
    eaten = images * (1 - ring_inside * patches)
    return torch.where(_per_image(torch.rand(count, generator=generator) < 0.5), grown, eaten)


def _intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The garment's levels changed as lighting and fabric change them: a gamma, a gain and a floor."""
    count = len(images)
    gamma = _per_image(torch.exp(_uniform(count, -0.7, 0.7, generator)))
    gain = _per_image(_uniform(count, 0.6, 1.15, generator))
    floor = _per_image(_uniform(count, 0.0, 0.15, generator))
    return ((floor + (1 - floor) * images.clamp(0, 1) ** gamma * gain) * (images > OBJECT_THRESHOLD)).clamp(0, 1)


def _texture(count: int, generator: torch.Generator) -> torch.Tensor:
    """Floor-like texture in [0, 1]: planks, tiles or blotches, mixed with grain."""
    x, y = _coordinates()
    frequency = _per_image(_uniform(count, 1.5, 9.0, generator))
    angle = _per_image(_uniform(count, 0, math.pi, generator))
    phase = _per_image(_uniform(count, 0, 2 * math.pi, generator))
    along, across = x * angle.cos() + y * angle.sin(), -x * angle.sin() + y * angle.cos()
    stripes = torch.sin(math.pi * frequency * along + phase)
    planks, tiles = 0.5 + 0.5 * stripes, 0.5 + 0.5 * stripes * torch.sin(math.pi * frequency * across)
    kind = _per_image(torch.randint(0, 3, (count,), generator=generator))
    pattern = torch.where(kind == 0, planks, torch.where(kind == 1, tiles, _smooth_field(count, generator, 4)))
    grain = _per_image(_uniform(count, 0, 0.5, generator))
    return ((1 - grain) * pattern + grain * torch.rand(count, 1, SIDE, SIDE, generator=generator)).clamp(0, 1)


def _background(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Texture where the mask leaked: all of the background, blobs of it, or a band around the garment."""
    count = len(images)
    garment = (images > OBJECT_THRESHOLD).float()
    strength = _per_image(_uniform(count, 0.05, 0.5, generator))
    everywhere = _per_image(torch.rand(count, generator=generator) < 0.3)
    blobs = (_smooth_field(count, generator, 5) > _per_image(_uniform(count, 0.4, 0.8, generator))).float()
    band = F.max_pool2d(garment, 5, 1, 2) * (1 - garment) * _per_image(torch.rand(count, generator=generator) < 0.5)
    region = torch.where(everywhere, torch.ones_like(garment), torch.maximum(blobs, band))
    return (images + (1 - garment) * region * strength * _texture(count, generator)).clamp(0, 1)


def _light(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A lighting gradient across the picture and a soft shadow."""
    count = len(images)
    x, y = _coordinates()
    angle = _per_image(_uniform(count, 0, 2 * math.pi, generator))
    gradient = 1 + _per_image(_uniform(count, 0, 0.5, generator)) * (x * angle.cos() + y * angle.sin()) / 2
    shade = (_smooth_field(count, generator, 3) > 0.6).float()
    shadow = _blurred(1 - _per_image(_uniform(count, 0, 0.5, generator)) * shade, torch.full((count,), 1.5))
    return (images * gradient * shadow).clamp(0, 1)


def _occlude(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Something across the garment (a textured rectangle), or a part the mask missed (black)."""
    count = len(images)
    box = _boxes(count, generator, (0.03, 0.25))
    black = _per_image(torch.rand(count, generator=generator) < 0.5)
    level = _per_image(_uniform(count, 0.1, 0.9, generator))
    fill = torch.where(black, 0.0, level * (0.7 + 0.3 * _texture(count, generator)))
    return torch.where(box, fill, images)


def _blurred(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a sigma per image."""
    count = len(images)
    offsets = torch.arange(7).float() - 3
    weights = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    weights = weights / weights.sum(1, keepdim=True)
    planes = images.reshape(1, count, SIDE, SIDE)
    planes = F.conv2d(F.pad(planes, (3, 3, 0, 0), mode="replicate"), weights[:, None, None, :], groups=count)
    planes = F.conv2d(F.pad(planes, (0, 0, 3, 3), mode="replicate"), weights[:, None, :, None], groups=count)
    return planes.reshape(count, 1, SIDE, SIDE)


def _blur(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _blurred(images, _uniform(len(images), 0.3, 1.2, generator))


def _dct_4x4() -> torch.Tensor:
    k = torch.arange(4).float()
    basis = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / 8) * math.sqrt(0.5)
    basis[0] /= math.sqrt(2)
    return basis


def _jpeg(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """JPEG-like blocks: each 4x4 block's DCT coefficients quantised, coarser for higher frequencies."""
    count, basis = len(images), _dct_4x4()
    blocks = images.reshape(count, 7, 4, 7, 4).permute(0, 1, 3, 2, 4)
    coefficients = basis @ blocks @ basis.T
    frequency = torch.arange(4).float()
    step = _uniform(count, 0.02, 0.15, generator)[:, None, None, None, None] * (
        (1 + frequency[:, None] + frequency[None, :]) / 2
    )
    step[..., 0, 0] = 1e-6  # the block's mean is kept
    restored = basis.T @ (torch.round(coefficients / step) * step) @ basis
    return restored.permute(0, 1, 3, 2, 4).reshape(count, 1, SIDE, SIDE).clamp(0, 1)


def _noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    sigma = _per_image(_uniform(len(images), 0, 0.06, generator))
    return (images + torch.randn(images.shape, generator=generator) * sigma).clamp(0, 1)


# The order they are applied in: geometry first, then what the camera and the mask add.
CORRUPTIONS: dict[str, Corruption] = {
    "affine": _affine,
    "cut": _cut,
    "edge": _edge,
    "intensity": _intensity,
    "background": _background,
    "light": _light,
    "occlude": _occlude,
    "blur": _blur,
    "jpeg": _jpeg,
    "noise": _noise,
}

NAMES = ("pair", *CORRUPTIONS)  # pair needs the batch's labels: `corrupt` applies it first
