"""Fashion-MNIST: find the four IDX files, verify them, parse them into a Dataset (datasets.py) held in memory.

The resources are declared as data (file name, SHA-256 of the decompressed bytes, item count), as torchvision does.
Checksums are of the decompressed bytes because repackagers re-gzip: Debian's copy has other .gz bytes than
upstream but the same content.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fashionclf.datasets import Dataset, Split, cache_root
from fashionclf.download import BadDownload, fetch, from_mirrors
from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write
from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_SIDE

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


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
        per_item = FASHION_MNIST_SIDE * FASHION_MNIST_SIDE if self.kind == "images" else 1
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


class _BadIdx(ValueError):
    """What is wrong with one file's content; the caller says which file (read_idx) or which mirror (download)."""


def default_cache_dir() -> Path:
    return cache_root() / "fashion-mnist"


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
        return torch.from_numpy(body.reshape(resource.items, 1, FASHION_MNIST_SIDE, FASHION_MNIST_SIDE).copy())
    if body.size and body.max() >= len(FASHION_MNIST_CLASSES):
        raise _BadIdx(f"label {int(body.max())} is out of range 0-{len(FASHION_MNIST_CLASSES) - 1}")
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
    if resource.kind == "images" and dims != (FASHION_MNIST_SIDE, FASHION_MNIST_SIDE):
        raise _BadIdx(f"images are {dims[0]}x{dims[1]}, expected {FASHION_MNIST_SIDE}x{FASHION_MNIST_SIDE}")
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
