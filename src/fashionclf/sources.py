"""Where a dataset comes from: `--data` names it, and every source ends as the same Dataset.

(nothing)                 Fashion-MNIST's four IDX files, looked up (data.py)
--data DIR_WITH_IDX       those files in a folder of your own
--data FILE.csv           one Kaggle CSV: a header, then label,pixel1,...,pixel784 per image
--data DIR_WITH_CSVS      fashion-mnist_train.csv and fashion-mnist_test.csv
--data DIR_OF_PHOTOS      a folder per class of photos, or split folders of them (photos.py)
--data clothing-small     a public photo set by name, found in the cache or downloaded (catalog.py)
"""

from __future__ import annotations

import codecs
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fashionclf import catalog
from fashionclf.data import RESOURCES, load_fashion_mnist
from fashionclf.datasets import Dataset, Split, split_off_test
from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256
from fashionclf.photos import read_photo_dataset
from fashionclf.preprocess import FASHION_MNIST_INPUT, FASHION_MNIST_SIDE, InputFormat

CSV_COLUMNS = 1 + FASHION_MNIST_SIDE * FASHION_MNIST_SIDE
CSV_NAMES = ("fashion-mnist_train.csv", "fashion-mnist_test.csv")
CHUNK_ROWS = 2_000  # parsed as text to name a bad cell: about 40 MB of Python strings a chunk
MAX_HEADER_CHARACTERS = 65_536  # the real header, label and pixel1 to pixel784, is 6,875 characters
# Spreadsheets save "Unicode" CSVs as UTF-16 with a byte-order mark; UTF-32's marks begin with UTF-16's, so first.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def load_dataset(
    path: Path | str | None, input: InputFormat = FASHION_MNIST_INPUT, download_missing: bool = True
) -> Dataset:
    """Any supported source, its images in `input`'s format (photos are brought into it; Fashion-MNIST's files are
    in its own). A single CSV file or photo folder is split by a seeded, stratified hold-out into a training and a
    test split, so no image is both trained and tested on. `download_missing`: whether Fashion-MNIST's files (no
    `path`) are downloaded where none are found, or that is an error."""
    if path is None:
        return _fashion_mnist_files(partial(load_fashion_mnist, download_missing=download_missing), None, input)
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
    train, test, origins = split_off_test(read_csv(path), path)
    return Dataset(train, test, path, "csv", {path.name: file_sha256(path)}, origins)


def read_csv(path: Path) -> Split:
    """A Kaggle Fashion-MNIST CSV in UTF-8 (with or without a byte-order mark) or UTF-16 or UTF-32 with one, read in
    chunks and checked row by row; errors name the file and the line as an editor numbers it. The header is checked
    before any row is parsed, so memory stays bounded by a chunk."""
    encoding = _encoding(path)
    _check_header(path, encoding)
    images, labels = [], []
    try:
        # Blank lines are kept as rows, so a row's index still gives its line, then dropped here.
        for chunk in pd.read_csv(path, header=0, dtype=str, chunksize=CHUNK_ROWS, keep_default_na=False,
                                 skip_blank_lines=False, encoding=encoding):  # fmt: skip
            text, lines = _rows_with_lines(chunk)
            if len(text):
                values = _checked_values(path, text, lines)
                labels.append(values[:, 0])
                images.append(values[:, 1:].reshape(-1, 1, FASHION_MNIST_SIDE, FASHION_MNIST_SIDE))
    except pd.errors.EmptyDataError:
        raise FashionClfError(f"{path}: empty file") from None
    except pd.errors.ParserError as exc:
        raise FashionClfError(f"{path}: {_parser_problem(exc)}") from None
    except UnicodeDecodeError:
        raise FashionClfError(f"{path}: {_undecodable(path, encoding)}") from None
    if not labels:
        raise FashionClfError(f"{path}: a header but no rows")
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels).astype(np.int64)))


def _encoding(path: Path) -> str:
    """UTF-16 or UTF-32 where a byte-order mark says so, else UTF-8 (whose own mark pandas skips)."""
    with path.open("rb") as stream:
        start = stream.read(4)
    return next((encoding for mark, encoding in BYTE_ORDER_MARKS if start.startswith(mark)), "utf-8")


def _check_header(path: Path, encoding: str) -> None:
    """Read the first line alone, with a bound on its length, and count its columns."""
    try:
        with path.open(encoding=encoding) as stream:
            header = stream.readline(MAX_HEADER_CHARACTERS + 1)
    except UnicodeDecodeError:
        raise FashionClfError(f"{path}: {_undecodable(path, encoding)}") from None
    if not header.strip():
        raise FashionClfError(f"{path}: empty file")
    if len(header) > MAX_HEADER_CHARACTERS:
        raise FashionClfError(
            f"{path}: line 1: longer than {MAX_HEADER_CHARACTERS:,} characters, not a header of {CSV_COLUMNS} columns "
            "(label and 784 pixels)"
        )
    if "\0" in header:  # as UTF-8, UTF-16 text holds a NUL beside every ASCII character
        raise FashionClfError(
            f"{path}: line 1: NUL characters, as in UTF-16 or UTF-32 without a byte-order mark; save the file as UTF-8"
        )
    _check_columns(path, header.count(",") + 1)


def _undecodable(path: Path, encoding: str) -> str:
    """Where the file stops being `encoding`: the line and byte offset of the first bad byte, for the error. Read
    in blocks, so a large file costs no more memory than a small one."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 0  # bytes read before the block, line breaks decoded before it
    with path.open("rb") as stream:
        while True:
            block = stream.read(1 << 20)
            held = decoder.getstate()[0]  # the end of the last block, an unfinished character
            try:
                lines += decoder.decode(block, final=not block).count("\n")
            except UnicodeDecodeError as exc:
                data = held + block
                line = lines + data[: exc.start].decode(encoding).count("\n") + 1
                return (
                    f"line {line}: byte 0x{data[exc.start]:02x} at offset {offset - len(held) + exc.start:,} is not "
                    f"{encoding.upper()} ({exc.reason}); save the file as UTF-8"
                )
            if not block:
                return f"not {encoding.upper()} text; save the file as UTF-8"
            offset += len(block)


def _check_columns(path: Path, columns: int) -> None:
    if columns != CSV_COLUMNS:
        raise FashionClfError(f"{path}: line 1: {columns} columns, expected {CSV_COLUMNS} (label and 784 pixels)")


def _parser_problem(exc: pd.errors.ParserError) -> str:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match:
        return f"line {match.group(2)}: {match.group(3)} columns, expected {match.group(1)}"
    return f"not a readable CSV file ({str(exc).strip().splitlines()[0]})"


def _rows_with_lines(chunk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's cells less its blank rows (lines of nothing, spaces or commas, which pandas reads as rows of
    empty cells), and each remaining row's line in the file (the header is line 1)."""
    text = chunk.to_numpy()
    maybe_blank = np.flatnonzero([not str(cell).strip() for cell in text[:, 0]])
    kept = np.ones(len(text), dtype=bool)
    kept[[row for row in maybe_blank if not "".join(map(str, text[row])).strip()]] = False
    return text[kept], chunk.index.to_numpy()[kept] + 2


def _checked_values(path: Path, text: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """uint8 values of a chunk's rows; the first bad cell is reported with its line."""
    numbers = pd.DataFrame(text).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
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
            raise FashionClfError(f"{path}: line {lines[row]}: {name} {text[row, column]!r} {problem}")
    return numbers.astype(np.uint8)
