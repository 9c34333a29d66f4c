"""Fashion-MNIST: find the four IDX files, verify them, parse them into uint8 tensors held in memory.

The resources are declared as data (file name, SHA-256 of the decompressed bytes, item count), as torchvision does.
Checksums are of the decompressed bytes because repackagers re-gzip: Debian's copy has other .gz bytes than
upstream but the same content.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fashionclf.download import BadDownload, fetch, from_mirrors
from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write
from fashionclf.preprocess import FASHION_MNIST_INPUT, InputFormat

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SIZE = 28


@dataclass(frozen=True)
class Resource:
    filename: str
    raw_sha256: str  # of the decompressed bytes
    items: int
    kind: str  # "images" or "labels"

    @property
    def header_size(self) -> int:
        return 16 if self.kind == "images" else 8

    @property
    def raw_size(self) -> int:
        per_item = IMAGE_SIZE * IMAGE_SIZE if self.kind == "images" else 1
        return self.header_size + self.items * per_item


# In this order: train images, train labels, test images, test labels (load_fashion_mnist relies on it).
RESOURCES: tuple[Resource, ...] = (
    Resource(
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        60000,
        "images",
    ),
    Resource(
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60000,
        "labels",
    ),
    Resource(
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        10000,
        "images",
    ),
    Resource(
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10000,
        "labels",
    ),
)
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # 0x08 = unsigned byte, then the number of dimensions


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
    classes: tuple[str, ...] = CLASSES
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


class _BadIdx(ValueError):
    """What is wrong with one file's content; the caller says which file (read_idx) or which mirror (download)."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashionclf" / "fashion-mnist"


def find_data_dir(data_dir: Path | None = None, resources: Sequence[Resource] = RESOURCES) -> tuple[Path, str] | None:
    """The first place holding all four files: --data-dir, $FASHIONCLF_DATA, the user cache, Debian's folder.

    A folder the user named must hold the files, so a typo is reported rather than silently passed over;
    the default places are only looked into.
    """
    if data_dir is not None:
        return _require_files(Path(data_dir), "--data-dir", resources)
    if os.environ.get("FASHIONCLF_DATA"):
        return _require_files(Path(os.environ["FASHIONCLF_DATA"]), "FASHIONCLF_DATA", resources)
    for directory, origin in ((default_cache_dir(), "cache"), (DEBIAN_DIR, "debian")):
        if all((directory / r.filename).is_file() for r in resources):
            return directory, origin
    return None


def _require_files(directory: Path, origin: str, resources: Sequence[Resource]) -> tuple[Path, str]:
    if not directory.is_dir():
        raise FashionClfError(f"{directory} (from {origin}): folder does not exist")
    for resource in resources:
        if not (directory / resource.filename).is_file():
            raise FashionClfError(f"{directory / resource.filename} (from {origin}): file is missing")
    return directory, origin


def load_fashion_mnist(
    data_dir: Path | None = None,
    download_missing: bool = True,
    resources: Sequence[Resource] = RESOURCES,
    mirrors: Sequence[str] = MIRRORS,
) -> Dataset:
    """Find (or download into the cache), verify and parse the dataset."""
    found = find_data_dir(data_dir, resources)
    if found is None:
        if not download_missing:
            raise FashionClfError(
                f"Fashion-MNIST not found in {default_cache_dir()} or {DEBIAN_DIR}; pass --data-dir, set "
                "FASHIONCLF_DATA, allow the download, or install Debian's dataset-fashion-mnist"
            )
        download(default_cache_dir(), mirrors=mirrors, resources=resources)
        found = (default_cache_dir(), "download")
    directory, origin = found
    train_images, train_labels, test_images, test_labels = (read_idx(directory / r.filename, r) for r in resources)
    return Dataset(
        train=Split(train_images, train_labels),
        test=Split(test_images, test_labels),
        directory=directory,
        origin=origin,
        checksums={r.filename: r.raw_sha256 for r in resources},
        split_origins={"train": resources[0].filename, "test": resources[2].filename},
    )


def read_idx(path: Path, resource: Resource) -> torch.Tensor:
    """Parse one verified IDX file: images as (N, 28, 28) uint8, labels as (N,) int64."""
    try:
        return _parse(_decompress(path, resource), resource)
    except _BadIdx as exc:
        raise FashionClfError(f"{path}: {exc}") from None


def _decompress(path: Path, resource: Resource) -> bytes:
    """Gunzip with a bound: content that outgrows the expected size is refused, never read whole."""
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read(resource.raw_size + 1)
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _BadIdx(f"not a valid gzip file ({exc})") from None
    except EOFError:
        raise _BadIdx("truncated (the gzip stream ends early)") from None
    except FileNotFoundError:
        raise _BadIdx("file is missing") from None
    except OSError as exc:
        raise _BadIdx(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > resource.raw_size:
        raise _BadIdx(f"holds more than the {resource.raw_size:,} bytes of {resource.items:,} {resource.kind}")
    return raw


def _parse(raw: bytes, resource: Resource) -> torch.Tensor:
    _check_header(raw, resource)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != resource.raw_sha256:
        raise _BadIdx(
            f"checksum mismatch (SHA-256 of the decompressed bytes is {digest[:16]}..., "
            f"expected {resource.raw_sha256[:16]}...)"
        )
    body = np.frombuffer(raw, dtype=np.uint8, offset=resource.header_size)
    if resource.kind == "images":
        # The copy makes the array writable (bytes are not), which torch.from_numpy needs; it costs ~10 ms.
        return torch.from_numpy(body.reshape(resource.items, 1, IMAGE_SIZE, IMAGE_SIZE).copy())
    if body.size and body.max() >= len(CLASSES):
        raise _BadIdx(f"label {int(body.max())} is out of range 0-{len(CLASSES) - 1}")
    return torch.from_numpy(body.astype(np.int64))


def _check_header(raw: bytes, resource: Resource) -> None:
    """Validate magic, item count and image size against the resource before anything is sized from the header."""
    if len(raw) < resource.header_size:
        raise _BadIdx(f"too short for an IDX header ({len(raw)} bytes)")
    header = np.frombuffer(raw, dtype=">u4", count=resource.header_size // 4)
    magic, count, dims = int(header[0]), int(header[1]), tuple(int(d) for d in header[2:])
    if magic != _MAGIC[resource.kind]:
        raise _BadIdx(f"wrong magic number 0x{magic:08x} for {resource.kind} (expected 0x{_MAGIC[resource.kind]:08x})")
    if count != resource.items:
        raise _BadIdx(f"declares {count:,} items, expected {resource.items:,}")
    if resource.kind == "images" and dims != (IMAGE_SIZE, IMAGE_SIZE):
        raise _BadIdx(f"images are {dims[0]}x{dims[1]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if len(raw) != resource.raw_size:
        raise _BadIdx(f"truncated ({len(raw):,} bytes of content, expected {resource.raw_size:,})")


def download(
    dest: Path, mirrors: Sequence[str] = MIRRORS, timeout: float = 30, resources: Sequence[Resource] = RESOURCES
) -> None:
    """Fetch each file missing from `dest`; the first mirror whose copy verifies wins.

    A file lands in `dest` only whole and verified, so an interrupted or failed download leaves nothing behind
    and never touches a file already there.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for resource in resources:
        target = dest / resource.filename
        if not target.is_file():
            attempt = partial(_fetch_verified, target=target, resource=resource, timeout=timeout)
            from_mirrors(mirrors, attempt, target)


def _fetch_verified(mirror: str, *, target: Path, resource: Resource, timeout: float) -> None:
    """Stream to a temporary file beside `target` (so the rename is atomic), verify it, then rename it into place.
    gzip grows incompressible data by a few bytes per block at most, so a longer answer cannot be the file."""
    limit = resource.raw_size + resource.raw_size // 1000 + 4096

    def fetch_and_check(tmp: Path) -> None:
        fetch(mirror + resource.filename, tmp, limit, timeout, resource.filename)
        try:
            _parse(_decompress(tmp, resource), resource)
        except _BadIdx as exc:
            raise BadDownload(str(exc)) from None

    atomic_write(target, fetch_and_check)


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
    return Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]; applied per batch, not to the whole dataset. Cached features (a
    frozen backbone's, float16) come out as float32, as they are."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def batches(
    split: Split, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches by index, the last partial one kept: uint8 images (B, 28, 28) and int64 labels (B,)."""
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
