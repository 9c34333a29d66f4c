"""The types every source produces: seeded, stratified hold-outs, batches and the scaling of a split's images."""

import numpy as np
import pytest
import torch

from fashionclf.datasets import Split, batches, concatenate, hold_out, to_float
from fashionclf.errors import FashionClfError


def test_split_validation_is_stratified_disjoint_and_seeded():
    labels = torch.arange(1000) % 10
    split = Split(images=torch.arange(1000).reshape(1000, 1, 1).expand(1000, 28, 28).to(torch.int32), labels=labels)
    kept, held = hold_out(split, size=100, seed=0)
    assert len(kept) == 900 and len(held) == 100
    assert torch.bincount(held.labels, minlength=10).tolist() == [10] * 10
    ids = lambda s: set(s.images[:, 0, 0].tolist())  # noqa: E731
    assert ids(kept).isdisjoint(ids(held)) and len(ids(kept) | ids(held)) == 1000
    assert ids(hold_out(split, size=100, seed=0)[1]) == ids(held)
    assert ids(hold_out(split, size=100, seed=1)[1]) != ids(held)


def test_a_validation_set_smaller_than_the_class_count_is_a_user_error():
    split = Split(images=torch.zeros(100, 28, 28, dtype=torch.uint8), labels=torch.arange(100) % 10)
    with pytest.raises(
        FashionClfError, match=r"^validation size 5: .* each of the 10 classes .*, so 10 to 90 held out"
    ):
        hold_out(split, size=5)
    single = Split(images=split.images[:11], labels=torch.tensor([0] * 10 + [1]))
    with pytest.raises(FashionClfError, match=r"at least 2 images in every class \(the smallest has 1\)$"):
        hold_out(single, size=2)


def test_batches_cover_every_image_once_and_keep_the_last_partial_batch():
    split = Split(images=torch.zeros(105, 28, 28, dtype=torch.uint8), labels=torch.arange(105))
    plain = [labels for _, labels in batches(split, 20)]
    assert [len(b) for b in plain] == [20] * 5 + [5]
    assert torch.cat(plain).tolist() == list(range(105))
    shuffled = [labels for _, labels in batches(split, 20, True, torch.Generator().manual_seed(1))]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(105))
    assert torch.cat(shuffled).tolist() != list(range(105))
    again = [labels for _, labels in batches(split, 20, True, torch.Generator().manual_seed(1))]
    assert torch.equal(torch.cat(shuffled), torch.cat(again))


def test_to_float_scales_to_the_unit_interval():
    images = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    scaled = to_float(images)
    assert scaled.dtype == torch.float32 and scaled.shape == (1, 1, 2, 2)
    assert scaled.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])


def test_concatenated_splits_keep_their_images_labels_order_and_kind(tmp_path):
    first = Split(torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 3, 2, 2), torch.tensor([0, 1]))
    features = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float16, shape=(300, 2))
    features[:] = np.arange(600).reshape(300, 2)
    joined = concatenate(Split(torch.from_numpy(features), torch.zeros(300, dtype=torch.int64)),
                         Split(torch.ones(1, 2, dtype=torch.float16), torch.tensor([3])))  # fmt: skip
    assert joined.images.dtype == torch.float16 and joined.images[:300].tolist() == features.tolist()
    assert joined.images[300].tolist() == [1, 1] and joined.labels.tolist() == [0] * 300 + [3]
    assert torch.equal(concatenate(first, first).images, torch.cat([first.images, first.images]))
