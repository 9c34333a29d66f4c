"""Augmentation of whole training batches, with no per-image Python: every random draw comes from the epoch's
seeded generator, so a resumed epoch augments exactly as the first run did, and every process under torchrun the
same way before it takes its slice. The draws are made on the CPU and applied where the batch is: on a GPU the
resampling of a batch of large photos is the GPU's work, not the CPU's."""

from __future__ import annotations

import numpy as np
import torch


def augment(
    images: torch.Tensor, generator: torch.Generator, crop_padding: int = 0, flip: bool = False, erase: float = 0.0
) -> torch.Tensor:
    """Augment a float batch (B, C, H, W) as a whole, with no per-image Python: a random crop after zero padding,
    a horizontal flip of half the images, and random erasing of a rectangle (2-33% of the area) with probability
    `erase`. Every draw comes from `generator`, so a seeded run stays reproducible."""
    batch, _, height, width = images.shape
    if crop_padding:
        padded = torch.nn.functional.pad(images, (crop_padding,) * 4)
        top = torch.randint(0, 2 * crop_padding + 1, (batch,), generator=generator).to(images.device)
        left = torch.randint(0, 2 * crop_padding + 1, (batch,), generator=generator).to(images.device)
        rows = (top[:, None] + torch.arange(height, device=images.device))[:, :, None]
        cols = (left[:, None] + torch.arange(width, device=images.device))[:, None, :]
        image = torch.arange(batch, device=images.device)[:, None, None]
        images = padded[image, :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        flipped = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    if erase:
        images = images * ~_erase_masks(batch, height, width, erase, generator).to(images.device)[:, None]
    return images


def _erase_masks(batch: int, height: int, width: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    area = torch.empty(batch).uniform_(0.02, 0.33, generator=generator) * height * width
    log_ratio = torch.empty(batch).uniform_(np.log(0.3), np.log(3.3), generator=generator)
    box_h = (area * log_ratio.exp()).sqrt().round().clamp(1, height).long()
    box_w = (area / log_ratio.exp()).sqrt().round().clamp(1, width).long()
    top = (torch.rand(batch, generator=generator) * (height - box_h + 1)).long()
    left = (torch.rand(batch, generator=generator) * (width - box_w + 1)).long()
    rows, cols = torch.arange(height)[None, :], torch.arange(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    chosen = torch.rand(batch, generator=generator) < probability
    return inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None]


def photo_augment(
    images: torch.Tensor, generator: torch.Generator, crop_scale: float = 0.0, rotate: float = 0.0, jitter: float = 0.0
) -> torch.Tensor:
    """Augment a float batch (B, C, S, S) of photos as a whole: a random resized crop (area from `crop_scale` to all
    of the picture, aspect ratio 3:4 to 4:3) turned by up to `rotate` degrees, in one affine resampling (borders
    reflected); then brightness, contrast and saturation each scaled by up to +-`jitter`. Every draw comes from
    `generator`."""
    batch, channels, height, width = images.shape
    if crop_scale or rotate:
        area = torch.empty(batch).uniform_(crop_scale or 1.0, 1.0, generator=generator)
        ratio = torch.empty(batch).uniform_(np.log(3 / 4), np.log(4 / 3), generator=generator).exp()
        scale_x, scale_y = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        shift_x = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - scale_x)
        shift_y = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - scale_y)
        angle = (torch.rand(batch, generator=generator) * 2 - 1) * np.deg2rad(rotate)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [
                torch.stack([scale_x * cos, -scale_y * sin, shift_x], 1),
                torch.stack([scale_x * sin, scale_y * cos, shift_y], 1),
            ],
            1,
        )
        grid = torch.nn.functional.affine_grid(
            theta.to(images.device), [batch, channels, height, width], align_corners=False
        )
        images = torch.nn.functional.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    if jitter:
        scales = 1 + (torch.rand(3, batch, 1, 1, 1, generator=generator) * 2 - 1) * jitter
        brightness, contrast, saturation = scales.to(images.device)
        images = images * brightness
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * contrast + mean
        if channels == 3:
            gray = (images * images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            images = (images - gray) * saturation + gray
        images = images.clamp(0, 1)
    return images
