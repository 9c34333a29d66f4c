"""The garment preprocessing: a cluttered background removed, a plain one left to the Fashion-MNIST path."""

import numpy as np
import pytest
from PIL import Image

from fashionclf import garment
from fashionclf.preprocess import InputFormat, open_image, to_dataset_domain

from pictures import encode, garment_on_white

GARMENT = InputFormat("garment")


def shirt_on_planks(size=(400, 300)) -> Image.Image:
    """A blue garment in the middle of a striped wooden floor, as phone photos show them."""
    width, height = size
    cols = np.arange(width)
    floor = np.where((cols // 12) % 2 == 0, 150, 110)[None, :].repeat(height, 0)
    rgb = np.stack([floor + 40, floor + 10, floor - 30], axis=-1).astype(np.uint8)
    rgb[60:240, 140:260] = (30, 60, 170)
    return Image.fromarray(rgb)


def test_a_cluttered_background_is_removed():
    photo = shirt_on_planks()
    today, found = to_dataset_domain(photo)[0], GARMENT.prepare(photo)[0]
    border = np.concatenate([found[:, :3].ravel(), found[:, -3:].ravel()])
    assert border.max() < 20  # the floor is gone: black around the garment
    assert found[8:20, 10:18].min() > 100  # the garment is light, as in Fashion-MNIST, and fills the frame
    assert np.concatenate([today[:, :3].ravel(), today[:, -3:].ravel()]).max() > 40  # today the floor stays


def test_a_16_bit_photo_is_segmented_as_its_8_bit_twin():
    gray = np.asarray(shirt_on_planks().convert("L"))
    sixteen = open_image(encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"), "shirt16.png")
    assert sixteen.mode == "F"  # its levels, in [0, 1]
    assert np.array_equal(GARMENT.prepare(sixteen), GARMENT.prepare(Image.fromarray(gray)))


def test_the_same_photo_gives_the_same_input():
    photo = shirt_on_planks()
    assert np.array_equal(GARMENT.prepare(photo), GARMENT.prepare(photo))


def test_a_product_shot_on_a_plain_background_comes_out_as_today():
    photo = garment_on_white()
    assert garment.has_plain_background(np.asarray(photo, np.float32) / 255)
    assert np.array_equal(GARMENT.prepare(photo), to_dataset_domain(photo))


def test_a_fashion_mnist_image_passes_through(real_data):
    image = real_data.test.images[0, 0].numpy()
    assert np.array_equal(GARMENT.prepare(Image.fromarray(image))[0], image)


def test_where_no_garment_is_found_the_fashion_mnist_path_is_taken():
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    photo = Image.fromarray(noise)
    mask = garment.garment_mask(np.asarray(photo))
    if mask.mean() < garment.MIN_OBJECT_FRACTION:
        assert np.array_equal(GARMENT.prepare(photo), to_dataset_domain(photo))
    else:
        assert GARMENT.prepare(photo).shape == (1, 28, 28)


def test_segmentation_works_on_a_shrunk_copy():
    big = shirt_on_planks((4000, 3000))
    small = garment._shrunk(big, garment.SEGMENT_SIDE)
    assert max(small.shape[:2]) == garment.SEGMENT_SIDE
    assert GARMENT.prepare(big).shape == (1, 28, 28)


def test_a_segmented_garment_is_framed_on_the_square_around_it():
    _, frame = GARMENT.prepare_framed(shirt_on_planks())  # the garment: columns 140-260, rows 60-240
    assert frame.side == pytest.approx(180, abs=8)
    assert frame.left == pytest.approx(110, abs=8) and frame.top == pytest.approx(60, abs=8)
