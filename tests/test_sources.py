"""Where data comes from: Kaggle CSV files read into the same tensors as the IDX files, and the look-up of a --data
path or name."""

import re
import subprocess
import sys

import pytest
import torch

from fashionclf import data, sources
from fashionclf.datasets import Split
from fashionclf.errors import FashionClfError
from fashionclf.preprocess import InputFormat
from fashionclf.sources import load_dataset, read_csv

from synthetic import CSV_HEADER, write_csv


def small_split(n=25, seed=0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    return Split(images, torch.arange(n) % 10)


def test_a_csv_round_trips_to_the_same_tensors(tmp_path):
    split = small_split()
    write_csv(tmp_path / "small.csv", split)
    read = read_csv(tmp_path / "small.csv")
    assert torch.equal(read.images, split.images) and torch.equal(read.labels, split.labels)
    assert read.images.dtype == torch.uint8 and read.labels.dtype == torch.int64


def test_a_single_csv_is_split_so_no_image_is_trained_and_tested_on(tmp_path):
    images = torch.arange(500 * 784, dtype=torch.int64).reshape(500, 1, 28, 28).remainder(251).to(torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(500) % 256, torch.arange(500) // 256  # every image unique
    write_csv(tmp_path / "all.csv", Split(images, torch.arange(500) % 10))
    data = load_dataset(tmp_path / "all.csv")
    assert (len(data.train), len(data.test)) == (400, 100)
    key = lambda image: bytes(image.flatten().tolist())  # noqa: E731
    assert not {key(i) for i in data.train.images} & {key(i) for i in data.test.images}
    assert torch.bincount(data.test.labels).tolist() == [10] * 10  # stratified
    assert torch.equal(load_dataset(tmp_path / "all.csv").test.images, data.test.images)  # the same every time
    assert "hold-out of 100 images of all.csv" in data.split_origins["test"]


def test_a_folder_with_the_train_and_test_csvs(tmp_path):
    write_csv(tmp_path / "fashion-mnist_train.csv", small_split(30, seed=1))
    write_csv(tmp_path / "fashion-mnist_test.csv", small_split(20, seed=2))
    data = load_dataset(tmp_path)
    assert (len(data.train), len(data.test), data.origin) == (30, 20, "csv")
    assert torch.equal(data.test.images, small_split(20, seed=2).images)


def bad_csv(kind: str) -> str:
    good_row = "3," + ",".join(["0"] * 784)
    rows = {
        "wrong column count": [good_row, good_row + ",7"],
        "label 10": [good_row, "10," + ",".join(["0"] * 784)],
        "pixel 256": [good_row, good_row, "1," + ",".join(["0"] * 783 + ["256"])],
        "a non-number": [good_row, "2," + ",".join(["0"] * 400 + ["dark"] + ["0"] * 383)],
        "header only": [],
    }
    if kind == "a huge header":
        return ",".join(f"c{i}" for i in range(100_000)) + "\n" + good_row + "\n"
    if kind == "a wide header":
        return ",".join(["x"] * 1000) + "\n" + good_row + "\n"
    return "" if kind == "empty file" else "\n".join([CSV_HEADER, *rows[kind]]) + "\n"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wrong column count", "line 3: 786 columns, expected 785"),
        ("label 10", "line 3: label '10' is not a label 0-9"),
        ("pixel 256", "line 4: pixel784 '256' is not a pixel value 0-255"),
        ("a non-number", "line 3: pixel401 'dark' is not an integer"),
        ("empty file", "empty file"),
        ("header only", "a header but no rows"),
        ("a huge header", "line 1: longer than 65,536 characters, not a header of 785 columns (label and 784 pixels)"),
        ("a wide header", "line 1: 1000 columns, expected 785 (label and 784 pixels)"),
    ],
)
def test_every_bad_csv_gets_one_line_and_exit_2(tmp_path, kind, message):
    path = tmp_path / "bad.csv"
    path.write_text(bad_csv(kind))
    with pytest.raises(FashionClfError, match=re.escape(message)):
        read_csv(path)
    result = subprocess.run([sys.executable, "-m", "fashionclf", "data", "--data", str(path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"fashionclf: error: {path}: {message}"


def test_the_header_is_checked_before_any_row_is_parsed(tmp_path, monkeypatch):
    """A header of 100,000 columns once cost 230 s and 11 GB of parsing before its error."""
    path = tmp_path / "wide.csv"
    path.write_text(bad_csv("a huge header"))
    monkeypatch.setattr(sources.pd, "read_csv", lambda *args, **kwargs: pytest.fail("rows were parsed"))
    with pytest.raises(FashionClfError, match="line 1: longer than 65,536 characters"):
        read_csv(path)


GOOD_ROW = "3," + ",".join(["0"] * 784)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le"])
def test_a_csv_with_a_byte_order_mark_reads_as_utf_8_does(tmp_path, encoding):
    """Spreadsheets save "Unicode" CSVs as UTF-16 with a byte-order mark, and "UTF-8" ones with a mark too."""
    split = small_split(3)
    write_csv(tmp_path / "plain.csv", split)
    text = (tmp_path / "plain.csv").read_text(encoding="utf-8")
    (tmp_path / "marked.csv").write_bytes(("\ufeff" + text).encode(encoding))
    read = read_csv(tmp_path / "marked.csv")
    assert torch.equal(read.images, split.images) and torch.equal(read.labels, split.labels)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "\n".join([CSV_HEADER, GOOD_ROW, "4," + ",".join(["0"] * 783) + ",\xe9"]).encode("latin-1"),
            "line 3: byte 0xe9 at offset 10,092 is not UTF-8 (unexpected end of data); save the file as UTF-8",
        ),
        (
            "\n".join([CSV_HEADER.replace("label", "lab\xe9l"), GOOD_ROW]).encode("latin-1"),
            "line 1: byte 0xe9 at offset 3 is not UTF-8 (invalid continuation byte)",
        ),
        (
            "\n".join([CSV_HEADER, GOOD_ROW]).encode("utf-16-le"),
            "line 1: NUL characters, as in UTF-16 or UTF-32 without a byte-order mark; save the file as UTF-8",
        ),
    ],
    ids=["a Latin-1 byte in a row", "a Latin-1 byte in the header", "UTF-16 without a byte-order mark"],
)
def test_text_that_is_not_utf_8_is_refused_where_it_goes_wrong(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(FashionClfError, match=f"^{re.escape(f'{path}: {message}')}"):
        read_csv(path)


def test_the_line_of_a_bad_cell_counts_blank_lines_as_an_editor_does(tmp_path):
    bad_row = "2," + ",".join(["0"] * 400 + ["dark"] + ["0"] * 383)
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join([CSV_HEADER, GOOD_ROW, "", GOOD_ROW, "   ", "", "," * 784, GOOD_ROW, bad_row]) + "\n")
    with pytest.raises(FashionClfError, match="line 9: pixel401 'dark' is not an integer"):
        read_csv(path)
    path.write_text("\n".join([CSV_HEADER, "", GOOD_ROW, "", GOOD_ROW + ",7"]) + "\n")
    with pytest.raises(FashionClfError, match="line 5: 786 columns, expected 785"):
        read_csv(path)
    path.write_text("\n".join([CSV_HEADER, "", GOOD_ROW, "", GOOD_ROW, ""]) + "\n")
    assert len(read_csv(path)) == 2  # blank lines, of nothing, spaces or commas, are no rows


def test_fashion_mnist_files_cannot_feed_a_photo_model(tmp_path):
    write_csv(tmp_path / "all.csv", small_split(50))
    with pytest.raises(FashionClfError, match="holds 28x28 grayscale Fashion-MNIST images; this model takes 64x64 RGB"):
        load_dataset(tmp_path / "all.csv", InputFormat("photo", 3, 64))


def test_a_path_that_is_nothing_names_the_known_sets(tmp_path):
    with pytest.raises(FashionClfError, match="no such file or folder \\(nor a named data set: clothing-small\\)"):
        load_dataset(tmp_path / "nope")


def test_fashion_mnist_found_nowhere_is_an_error_not_a_download_when_downloads_are_not_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHIONCLF_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(data, "download", lambda *args, **kwargs: pytest.fail("downloaded"))
    with pytest.raises(FashionClfError, match="Fashion-MNIST not found in .*allow the download"):
        load_dataset(None, download_missing=False)
