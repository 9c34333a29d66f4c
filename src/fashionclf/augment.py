"""Augmentation of whole training batches, with no per-image Python: every random draw comes from the epoch's
seeded generator, so a resumed epoch augments exactly as the first run did, and every process under torchrun the
same way before it takes its slice."""

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
        top = torch.randint(0, 2 * crop_padding + 1, (batch,), generator=generator)
        left = torch.randint(0, 2 * crop_padding + 1, (batch,), generator=generator)
        rows = (top[:, None] + torch.arange(height))[:, :, None]
        cols = (left[:, None] + torch.arange(width))[:, None, :]
        images = padded[torch.arange(batch)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        flipped = torch.rand(batch, generator=generator) < 0.5
        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    if erase:
        images = images * ~_erase_masks(batch, height, width, erase, generator)[:, None]
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
