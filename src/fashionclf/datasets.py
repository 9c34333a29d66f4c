"""What every data source produces: splits of uint8 images (N, C, H, W) with their labels, the class names, and
where each split came from; the seeded, stratified hold-outs; batches of a split.

A source (Fashion-MNIST's IDX files in data.py, CSV files and photo folders in sources.py and photos.py) ends as a
`Dataset`, so training, evaluation, analysis and quantization never ask which source it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fashionclf.errors import FashionClfError
from fashionclf.files import write_error
from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_INPUT, InputFormat


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8: Fashion-MNIST's are (N, 1, 28, 28)
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """Every source ends as this: splits of uint8 images, the class names, and where each split came from. A source
    without a test split (a photo folder of train/ and validation/ only) is evaluated on its validation split; one
    without a validation split has one held out of its training split by `train`."""

    train: Split
    test: Split | None
    directory: Path  # where the files were read from
    origin: str  # "--data-dir", "FASHIONCLF_DATA", "cache", "debian", "download", "csv" or "photos"
    checksums: dict[str, str]  # file or split -> verified SHA-256 (of the decompressed bytes for IDX files)
    split_origins: dict[str, str] = field(default_factory=dict)  # split name -> where its images came from
    classes: tuple[str, ...] = FASHION_MNIST_CLASSES
    validation: Split | None = None
    input: InputFormat = FASHION_MNIST_INPUT  # what the images are: how pictures were brought into them

    @property
    def evaluation_split(self) -> tuple[str, Split]:
        """The split that results are reported on: the test split, or the validation split where there is none."""
        if self.test is not None:
            return "test", self.test
        if self.validation is None:
            raise FashionClfError(f"{self.directory}: neither a test nor a validation split to evaluate on")
        return "validation", self.validation


def cache_root() -> Path:
    """fashionclf's cache folder (under $XDG_CACHE_HOME, else ~/.cache): each source keeps what it downloads or
    decodes in a folder of its own there."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashionclf"


def hold_out(split: Split, size: int, seed: int = 0, purpose: str = "validation") -> tuple[Split, Split]:
    """A seeded, stratified hold-out of `size` images: (the rest, the hold-out), each in the original order."""
    from sklearn.model_selection import train_test_split  # scikit-learn takes a second to import; only needed here

    if not _stratifiable(split, size):  # scikit-learn's own message names none of the numbers to change
        classes, smallest = _class_counts(split)
        raise FashionClfError(
            f"{purpose} size {size}: a stratified hold-out needs one image of each of the {classes} classes held out "
            f"and one kept, so {classes} to {len(split) - classes} held out, and at least 2 images in every class (the "
            f"smallest has {smallest})"
        )
    indices = np.arange(len(split))
    kept, held = train_test_split(indices, test_size=size, random_state=seed, stratify=split.labels.numpy())
    kept, held = torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))
    return Split(split.images[kept], split.labels[kept]), Split(split.images[held], split.labels[held])


def _class_counts(split: Split) -> tuple[int, int]:
    """(the number of classes in the split, the images of the smallest)"""
    counts = torch.bincount(split.labels)
    counts = counts[counts > 0]
    return len(counts), int(counts.min()) if len(counts) else 0


def _stratifiable(split: Split, size: int) -> bool:
    """Whether a stratified hold-out of `size` can be made: scikit-learn's conditions, each class on both sides."""
    classes, smallest = _class_counts(split)
    return min(size, len(split) - size) >= classes and smallest >= 2


JOINED_AT_ONCE = 256  # images copied per slice by `concatenate`

TEST_SEED = 0  # the test hold-out of a source without a test split is the same for every run: runs compare on it
TEST_SHARE = 5  # a fifth of such a source is held out for testing
MIN_PER_CLASS = 7  # images of each class that leave a test hold-out and then train's validation hold-out possible


def split_off_test(split: Split, source: Path, unit: str = "images") -> tuple[Split, Split, dict[str, str]]:
    """For a source without a test split: a fifth of its images, at most 10,000 (Fashion-MNIST's test size), held
    out by a seeded, stratified split; returns (train, test, where each came from)."""
    size = min(10_000, len(split) // TEST_SHARE)
    if not _stratifiable(split, size):
        classes, smallest = _class_counts(split)
        raise FashionClfError(
            f"{source}: {len(split):,} {unit} in {classes} classes, too few to hold out a fifth as a test split with "
            f"one of each class (the smallest class has {smallest}); give every class at least {TEST_SHARE} {unit}, "
            f"and {MIN_PER_CLASS} to hold out a validation split too"
        )
    train, test = hold_out(split, size, seed=TEST_SEED, purpose="test")
    origins = {
        "train": f"{source.name}, less the test hold-out ({len(train):,} {unit})",
        "test": f"a seeded (seed {TEST_SEED}), stratified hold-out of {size:,} {unit} of {source.name}",
    }
    return train, test, origins


def concatenate(*splits: Split) -> Split:
    """The splits one after another. The images go into a temporary memory-mapped file in the cache folder (gone
    when the last reference is), a slice at a time: joining a photo folder's memory-mapped splits holds none of
    their images in memory."""
    shape = (sum(len(s) for s in splits), *splits[0].images.shape[1:])
    folder = cache_root() / "tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as file:  # unlinked at once; the mapping keeps its own descriptor
            images = np.memmap(file, dtype=splits[0].images.numpy().dtype, mode="w+", shape=shape)
    except OSError as exc:
        raise write_error(folder, exc) from None
    start = 0
    for split in splits:
        for offset in range(0, len(split), JOINED_AT_ONCE):
            part = split.images[offset : offset + JOINED_AT_ONCE].numpy()
            images[start + offset : start + offset + len(part)] = part
        start += len(split)
    return Split(torch.from_numpy(images), torch.cat([s.labels for s in splits]))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]; applied per batch, not to the whole dataset. Cached features (a
    frozen backbone's, float16) come out as float32, as they are."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def batches(
    split: Split, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches by index, the last partial one kept: uint8 images (B, C, H, W) (a frozen backbone's cached features:
    float16 (B, views, features)) and int64 labels (B,)."""
    if not shuffle:  # slices are views: evaluation copies nothing
        for start in range(0, len(split), batch_size):
            yield split.images[start : start + batch_size], split.labels[start : start + batch_size]
        return
    order = torch.randperm(len(split), generator=generator)
    for index in order.split(batch_size):
        yield split.images[index], split.labels[index]


def describe(data: Dataset) -> dict:
    """JSON-ready provenance: where the data came from, what was verified, its splits and classes."""
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    return {
        "origin": data.origin,
        "directory": str(data.directory),
        "files": [{"filename": name, "raw_sha256": sha, "verified": True} for name, sha in data.checksums.items()],
        "splits": {
            name: {"images": len(split), "from": data.split_origins.get(name, "")}
            for name, split in splits.items()
            if split is not None
        },
        "train_size": len(data.train),
        "test_size": len(data.test) if data.test is not None else None,
        "classes": list(data.classes),
        "input": vars(data.input),
    }
