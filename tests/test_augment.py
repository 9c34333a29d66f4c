"""Batch augmentation: what each option does, on every channel, and the same for the same seed."""

import torch

from fashionclf.augment import augment


def test_augment_crop_shifts_content_within_the_padding():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 14, 14] = 1.0
    for seed in range(10):
        cropped = augment(image, torch.Generator().manual_seed(seed), crop_padding=3)
        (row, col) = torch.nonzero(cropped[0, 0])[0].tolist()
        assert abs(row - 14) <= 3 and abs(col - 14) <= 3 and cropped.sum() == 1.0


def test_augment_flips_about_half_and_erases_a_rectangle():
    images = torch.arange(28, dtype=torch.float32).repeat(200, 1, 28, 1) + 1  # column index + 1, never 0
    flipped = augment(images, torch.Generator().manual_seed(0), flip=True)
    is_flipped = flipped[:, 0, 0, 0] == 28
    assert 70 < is_flipped.sum() < 130
    assert torch.equal(flipped[is_flipped], images[is_flipped].flip(-1))
    erased = augment(images, torch.Generator().manual_seed(0), erase=1.0)
    zero = erased[:, 0] == 0
    areas = zero.sum(dim=(1, 2)).float() / (28 * 28)
    assert ((areas >= 0.01) & (areas <= 0.4)).all()
    rows, cols = zero.any(dim=2), zero.any(dim=1)
    assert torch.equal(zero.sum(dim=(1, 2)), rows.sum(1) * cols.sum(1))  # a rectangle: rows x columns


def test_augment_is_reproducible_for_a_seed():
    images = torch.rand(16, 1, 28, 28)
    a = augment(images, torch.Generator().manual_seed(5), 2, True, 0.5)
    b = augment(images, torch.Generator().manual_seed(5), 2, True, 0.5)
    c = augment(images, torch.Generator().manual_seed(6), 2, True, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_crop_moves_every_channel_of_a_colour_image_alike():
    images = torch.rand(8, 3, 16, 16)
    cropped = augment(images, torch.Generator().manual_seed(1), crop_padding=2)
    for channel in range(1, 3):
        moved = torch.nonzero(cropped[:, 0] != 0).tolist() == torch.nonzero(cropped[:, channel] != 0).tolist()
        assert moved
