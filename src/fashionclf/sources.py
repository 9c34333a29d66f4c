"""Other places a dataset comes from: Kaggle's CSV files, and folders of labelled photos.

Every source becomes the same uint8 tensors as the IDX files, so training and evaluation never know the difference.
    --data DIR_WITH_IDX       the four IDX files (the default look-up when --data is not given)
    --data FILE.csv           one Kaggle CSV: a header, then label,pixel1,...,pixel784 per image
    --data DIR_WITH_CSVS      fashion-mnist_train.csv and fashion-mnist_test.csv
    --data DIR_OF_CLASSES     one sub-folder per class (t-shirt_top, Trouser, ankle-boot, ...) of pictures
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from fashionclf.data import (
    CLASSES,
    IMAGE_SIZE,
    RESOURCES,
    FashionMNIST,
    Split,
    default_cache_dir,
    hold_out,
    load_fashion_mnist,
)
from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write, file_sha256
from fashionclf.preprocess import image_files, open_image, to_dataset_domain

CSV_COLUMNS = 1 + IMAGE_SIZE * IMAGE_SIZE
CSV_NAMES = ("fashion-mnist_train.csv", "fashion-mnist_test.csv")
CHUNK_ROWS = 2_000  # parsed as text to name a bad cell: about 40 MB of Python strings a chunk
MAX_HEADER_BYTES = 65_536  # the real header, label and pixel1 to pixel784, is 6,875 bytes
PREPROCESSING_VERSION = 2  # part of the photo cache key: bump it when the picture preprocessing changes
TEST_SEED = 0  # the test hold-out of a single source is the same for every run, so runs compare on one test set


def load_dataset(path: Path | None) -> FashionMNIST:
    """Any supported source. A single CSV file or photo folder is split by a seeded, stratified hold-out into a
    training and a test split, so no image is both trained and tested on."""
    if path is None:
        return load_fashion_mnist()
    path = Path(path)
    if path.is_file():
        return _held_out(read_csv(path), path, "csv", {path.name: file_sha256(path)})
    if not path.is_dir():
        raise FashionClfError(f"{path}: no such file or folder")
    if all((path / name).is_file() for name in CSV_NAMES):
        train, test = (read_csv(path / name) for name in CSV_NAMES)
        checksums = {name: file_sha256(path / name) for name in CSV_NAMES}
        return FashionMNIST(train, test, path, "csv", checksums, dict(zip(("train", "test"), CSV_NAMES, strict=True)))
    if any((path / r.filename).exists() for r in RESOURCES):
        return load_fashion_mnist(path)
    split, key = read_photo_folder(path)
    return _held_out(split, path, "photos", {"photos": key})


def test_size(images: int) -> int:
    """The test hold-out of a single source: a fifth, at most 10,000 images (Fashion-MNIST's own test size)."""
    return min(10_000, images // 5)


def _held_out(split: Split, path: Path, origin: str, checksums: dict[str, str]) -> FashionMNIST:
    size = test_size(len(split))
    train, test = hold_out(split, size, seed=TEST_SEED, purpose="test")
    origins = {
        "train": f"{path.name}, less the test hold-out ({len(train):,} images)",
        "test": f"a seeded (seed {TEST_SEED}), stratified hold-out of {size:,} images of {path.name}",
    }
    return FashionMNIST(train, test, path, origin, checksums, origins)


def read_csv(path: Path) -> Split:
    """A Kaggle Fashion-MNIST CSV, read in chunks and checked row by row; errors name the file and line. The header
    is checked before any row is parsed, so memory stays bounded by a chunk."""
    _check_header(path)
    images, labels = [], []
    try:
        for chunk in pd.read_csv(path, header=0, dtype=str, chunksize=CHUNK_ROWS, keep_default_na=False):
            if chunk.empty:
                continue
            values = _checked_values(path, chunk)
            labels.append(values[:, 0])
            images.append(values[:, 1:].reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    except pd.errors.EmptyDataError:
        raise FashionClfError(f"{path}: empty file") from None
    except pd.errors.ParserError as exc:
        raise FashionClfError(f"{path}: {_parser_problem(exc)}") from None
    if not labels:
        raise FashionClfError(f"{path}: a header but no rows")
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels).astype(np.int64)))


def _check_header(path: Path) -> None:
    """Read the first line alone, with a bound on its length, and count its columns."""
    with path.open("rb") as stream:
        header = stream.readline(MAX_HEADER_BYTES + 1)
    if not header.strip():
        raise FashionClfError(f"{path}: empty file")
    if len(header) > MAX_HEADER_BYTES:
        raise FashionClfError(
            f"{path}: line 1: longer than {MAX_HEADER_BYTES:,} bytes, not a header of {CSV_COLUMNS} columns "
            "(label and 784 pixels)"
        )
    _check_columns(path, header.count(b",") + 1)


def _check_columns(path: Path, columns: int) -> None:
    if columns != CSV_COLUMNS:
        raise FashionClfError(f"{path}: line 1: {columns} columns, expected {CSV_COLUMNS} (label and 784 pixels)")


def _parser_problem(exc: pd.errors.ParserError) -> str:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match:
        return f"line {match.group(2)}: {match.group(3)} columns, expected {match.group(1)}"
    return f"not a readable CSV file ({str(exc).strip().splitlines()[0]})"


def _checked_values(path: Path, chunk: pd.DataFrame) -> np.ndarray:
    """uint8 values of a chunk; the first bad cell is reported with its line number (the header is line 1)."""
    text = chunk.to_numpy()
    numbers = pd.DataFrame(text).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    first_line = int(chunk.index[0]) + 2
    problems = [  # (cells at fault, index of their first column, what is wrong)
        (~np.isfinite(numbers) | (numbers != np.round(numbers)), 0, "is not an integer"),
        ((numbers[:, :1] < 0) | (numbers[:, :1] > 9), 0, "is not a label 0-9"),
        ((numbers[:, 1:] < 0) | (numbers[:, 1:] > 255), 1, "is not a pixel value 0-255"),
    ]
    for mask, offset, problem in problems:
        if mask.any():
            row, column = np.argwhere(mask)[0]
            column += offset
            name = "label" if column == 0 else f"pixel{column}"
            raise FashionClfError(f"{path}: line {first_line + row}: {name} {text[row, column]!r} {problem}")
    return numbers.astype(np.uint8)


def class_index(folder_name: str) -> int | None:
    """Forgiving class names: case, spaces, underscores, hyphens and slashes do not matter."""
    key = re.sub(r"[\s_\-/]+", "", folder_name.lower())
    for index, name in enumerate(CLASSES):
        if re.sub(r"[\s_\-/]+", "", name.lower()) == key:
            return index
    return None


def read_photo_folder(folder: Path, cache_dir: Path | None = None) -> tuple[Split, str]:
    """Every picture of every class sub-folder, preprocessed into the 28x28 domain, and the cache key: the files'
    content, their labels and the preprocessing version, so a picture moved to another class folder is read anew.
    Progress and skipped files go to stderr."""
    labelled = _labelled_files(folder)
    entries = "".join(f"{file_sha256(path)} {label}\n" for path, label in labelled)
    key = hashlib.sha256(f"v{PREPROCESSING_VERSION}\n{entries}".encode()).hexdigest()[:32]
    cache = (cache_dir or default_cache_dir().parent / "photos") / f"{key}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return Split(torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"])), key
    images, labels, skipped = [], [], []
    for path, label in tqdm(labelled, desc=f"reading {folder}", unit="image", disable=None, leave=False):
        try:
            images.append(to_dataset_domain(open_image(path, str(path))))
            labels.append(label)
        except FashionClfError as exc:
            skipped.append(str(exc))
    for problem in skipped:
        tqdm.write(f"skipped {problem}", file=sys.stderr)
    if not images:
        raise FashionClfError(f"{folder}: no readable pictures in its class folders")
    split = Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))
    atomic_write(cache, lambda tmp: _save_arrays(tmp, images=split.images.numpy(), labels=split.labels.numpy()))
    return split, key


def _save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as stream:  # given a name, numpy would append .npz to it
        np.savez(stream, **arrays)


def _labelled_files(folder: Path) -> list[tuple[Path, int]]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise FashionClfError(f"{folder}: neither Fashion-MNIST files (IDX or CSV) nor class sub-folders of pictures")
    unknown = [p.name for p in subfolders if class_index(p.name) is None]
    if unknown:
        raise FashionClfError(f"{folder}: sub-folder {unknown[0]!r} names no class; the classes are "
                              f"{', '.join(CLASSES)}")  # fmt: skip
    labelled = []
    for sub in subfolders:
        files, _ = image_files([sub])
        labelled += [(path, class_index(sub.name)) for path in files]
    if not labelled:
        raise FashionClfError(f"{folder}: its class folders hold no files")
    return labelled
