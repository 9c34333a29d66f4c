"""Fashion-MNIST batches made to look like photos: each corruption on the images it draws, reproducibly."""

import pytest
import torch

from fashionclf.photolike import CORRUPTIONS, NAMES, corrupt, reframe

FOOTWEAR = torch.tensor([5, 7, 9])


def batch(count=64):
    images = torch.zeros(count, 1, 28, 28)
    images[:, :, 6:22, 9:19] = torch.rand(count, 1, 16, 10) * 0.5 + 0.5  # a light garment on black
    return images, torch.arange(count) % 10


@pytest.mark.parametrize("name", NAMES)
def test_each_corruption_changes_the_images_it_draws_and_stays_in_range(name):
    images, labels = batch()
    corrupted = corrupt(images, labels, torch.Generator().manual_seed(0), {name: 0.5}, FOOTWEAR)
    changed = (corrupted != images).flatten(1).any(1)
    assert corrupted.shape == images.shape and 0 <= corrupted.min() and corrupted.max() <= 1
    assert 0 < changed.sum() < len(images)
    if name == "pair":
        assert set(labels[changed].tolist()) <= {5, 7, 9}


def test_the_same_generator_corrupts_the_same_way():
    images, labels = batch()
    every = {name: 0.3 for name in NAMES}
    first = corrupt(images, labels, torch.Generator().manual_seed(3), every, FOOTWEAR)
    again = corrupt(images, labels, torch.Generator().manual_seed(3), every, FOOTWEAR)
    other = corrupt(images, labels, torch.Generator().manual_seed(4), every, FOOTWEAR)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_probability_zero_leaves_the_batch_alone():
    images, labels = batch()
    assert torch.equal(corrupt(images, labels, torch.Generator(), {n: 0.0 for n in NAMES}, FOOTWEAR), images)


def test_reframe_makes_the_longest_side_fill_the_frame():
    images = torch.zeros(1, 1, 56, 84)
    images[:, :, 10:30, 20:30] = 1.0  # 20 tall, 10 wide, off-centre on a larger canvas
    framed = reframe(images)[0, 0] > 0.5
    rows, cols = framed.any(1).nonzero().flatten(), framed.any(0).nonzero().flatten()
    assert rows[0] <= 1 and rows[-1] >= 26  # fills the height
    assert abs((cols[0] + cols[-1]).item() / 2 - 13.5) <= 1  # centred


def test_every_corruption_has_a_name():
    assert set(NAMES) == {"pair", *CORRUPTIONS}
