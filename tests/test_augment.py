"""Batch augmentation: what each option does, on every channel, and the same for the same seed."""

import pytest
import torch

from fashionclf.augment import augment, photo_augment


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


def _augmented_on(device: str) -> torch.Tensor:
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(7)
    batch = photo_augment(images.to(device), generator, crop_scale=0.5, rotate=10.0, jitter=0.3)
    return augment(batch, generator, crop_padding=4, flip=True, erase=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_batch_on_the_gpu_is_augmented_as_on_the_cpu():
    # The draws come from the CPU generator either way; only the arithmetic moves, so the two agree to rounding.
    on_gpu = _augmented_on("cuda")
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), _augmented_on("cpu"), atol=1e-4, rtol=0)
