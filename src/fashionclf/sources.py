"""Where a dataset comes from: `--data` names it, and every source ends as the same Dataset.

(nothing)                 Fashion-MNIST's four IDX files, looked up (data.py)
--data DIR_WITH_IDX       those files in a folder of your own
--data FILE.csv           one Kaggle CSV: a header, then label,pixel1,...,pixel784 per image
--data DIR_WITH_CSVS      fashion-mnist_train.csv and fashion-mnist_test.csv
--data DIR_OF_PHOTOS      a folder per class of photos, or split folders of them (photos.py)
--data clothing-small     a public photo set by name, found in the cache or downloaded (catalog.py)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fashionclf import catalog
from fashionclf.data import IMAGE_SIZE, RESOURCES, Dataset, Split, load_fashion_mnist, split_off_test
from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256
from fashionclf.photos import read_photo_dataset
from fashionclf.preprocess import FASHION_MNIST_INPUT, InputFormat

CSV_COLUMNS = 1 + IMAGE_SIZE * IMAGE_SIZE
CSV_NAMES = ("fashion-mnist_train.csv", "fashion-mnist_test.csv")
CHUNK_ROWS = 2_000  # parsed as text to name a bad cell: about 40 MB of Python strings a chunk
MAX_HEADER_BYTES = 65_536  # the real header, label and pixel1 to pixel784, is 6,875 bytes


def load_dataset(path: Path | str | None, input: InputFormat = FASHION_MNIST_INPUT) -> Dataset:
    """Any supported source, its images in `input`'s format (photos are brought into it; Fashion-MNIST's files are
    in its own). A single CSV file or photo folder is split by a seeded, stratified hold-out into a training and a
    test split, so no image is both trained and tested on."""
    if path is None:
        return _fashion_mnist_files(load_fashion_mnist, None, input)
    if str(path) in catalog.SETS and not Path(path).exists():
        return read_photo_dataset(catalog.find_or_download(catalog.SETS[str(path)]), input)
    path = Path(path)
    if path.is_file():
        return _fashion_mnist_files(_single_csv, path, input)
    if not path.is_dir():
        raise FashionClfError(f"{path}: no such file or folder (nor a named data set: {', '.join(catalog.SETS)})")
    if all((path / name).is_file() for name in CSV_NAMES):
        return _fashion_mnist_files(_csv_pair, path, input)
    if any((path / r.filename).exists() for r in RESOURCES):
        return _fashion_mnist_files(load_fashion_mnist, path, input)
    return read_photo_dataset(path, input)


def _fashion_mnist_files(read, path: Path | None, input: InputFormat) -> Dataset:
    """Fashion-MNIST's own files hold 28x28 grayscale images: a model that takes anything else needs photos."""
    if input.domain != FASHION_MNIST_INPUT.domain:
        raise FashionClfError(
            f"{path or 'Fashion-MNIST'}: holds 28x28 grayscale Fashion-MNIST images; this model takes "
            f"{input.describe()} photos: give --data a folder of photos"
        )
    return read(path)


def _csv_pair(path: Path) -> Dataset:
    train, test = (read_csv(path / name) for name in CSV_NAMES)
    checksums = {name: file_sha256(path / name) for name in CSV_NAMES}
    return Dataset(train, test, path, "csv", checksums, dict(zip(("train", "test"), CSV_NAMES, strict=True)))


def _single_csv(path: Path) -> Dataset:
    train, test, origins = split_off_test(read_csv(path), path.name)
    return Dataset(train, test, path, "csv", {path.name: file_sha256(path)}, origins)


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
            images.append(values[:, 1:].reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE))
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
