"""The dataset loader on small IDX files written here: parsing, verification, look-up order and the downloader."""

from __future__ import annotations

import gzip
import hashlib
import json
import tracemalloc
import zlib
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionclf import data as fmnist
from fashionclf.data import Resource
from fashionclf.datasets import describe
from fashionclf.errors import FashionClfError

TRAIN, TEST = 40, 20


def idx_bytes(kind: str, values: np.ndarray) -> bytes:
    if kind == "images":
        header = np.array([0x803, len(values), 28, 28], dtype=">u4")
    else:
        header = np.array([0x801, len(values)], dtype=">u4")
    return header.tobytes() + values.astype(np.uint8).tobytes()


def make_dataset(folder: Path, seed: int = 0) -> tuple[Resource, ...]:
    """Four small IDX .gz files in `folder`, and the resources (with their own checksums) that describe them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    resources = []
    for resource in fmnist.RESOURCES:
        items = TRAIN if resource.filename.startswith("train") else TEST
        values = rng.integers(0, 256, (items, 28, 28)) if resource.kind == "images" else np.arange(items) % 10
        raw = idx_bytes(resource.kind, values)
        (folder / resource.filename).write_bytes(gzip.compress(raw))
        resources.append(replace(resource, items=items, raw_sha256=hashlib.sha256(raw).hexdigest()))
    return tuple(resources)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data anywhere the loader looks, unless a test puts it there."""
    monkeypatch.delenv("FASHIONCLF_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


def test_parser_round_trips_the_values(isolated):
    resources = make_dataset(isolated / "d", seed=3)
    data = fmnist.load_fashion_mnist(isolated / "d", resources=resources)
    rng = np.random.default_rng(3)
    expected_train = rng.integers(0, 256, (TRAIN, 28, 28)).astype(np.uint8)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (TRAIN, 1, 28, 28)
    assert np.array_equal(data.train.images.numpy()[:, 0], expected_train)
    assert data.train.labels.dtype == torch.int64
    assert data.test.labels.tolist() == [i % 10 for i in range(TEST)]
    assert data.origin == "--data-dir" and data.checksums["t10k-labels-idx1-ubyte.gz"] == resources[3].raw_sha256


def test_a_re_gzipped_copy_with_the_same_content_verifies(isolated):
    resources = make_dataset(isolated / "d")
    path = isolated / "d" / resources[0].filename
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1, mtime=12345))
    assert len(fmnist.load_fashion_mnist(isolated / "d", resources=resources).train) == TRAIN


def corrupt(kind: str):
    """Each bad file: (what to write over train-images, fragment of the expected message)."""
    good = idx_bytes("images", np.zeros((TRAIN, 28, 28)))
    header = np.array([0x803, TRAIN, 28, 28], dtype=">u4")
    cases = {
        "not gzip": (b"this is not gzip", "not a valid gzip file"),
        "truncated gzip": (gzip.compress(good)[:-40], "truncated"),
        "wrong magic": (gzip.compress(np.array([0x801, TRAIN, 28, 28], ">u4").tobytes() + good[16:]), "magic"),
        "wrong count": (gzip.compress(np.array([0x803, 7, 28, 28], ">u4").tobytes() + good[16:]), "declares 7"),
        "wrong dims": (gzip.compress(np.array([0x803, TRAIN, 32, 32], ">u4").tobytes() + good[16:]), "32x32"),
        "short body": (gzip.compress(header.tobytes() + good[16:-100]), "truncated"),
        "absurd size": (gzip.compress(np.array([0x803, 2**31, 28, 28], ">u4").tobytes() + b"\0" * 64), "declares"),
        "too long": (gzip.compress(good + b"\0" * 10_000), "holds more than"),
        "checksum": (gzip.compress(header.tobytes() + b"\1" * (TRAIN * 784)), "checksum mismatch"),
        "empty": (b"", "too short"),
    }
    return cases[kind]


@pytest.mark.parametrize(
    "kind",
    ["not gzip", "truncated gzip", "wrong magic", "wrong count", "wrong dims", "short body", "absurd size",
     "too long", "checksum", "empty"],
)  # fmt: skip
def test_every_bad_file_is_refused_with_its_name(isolated, kind):
    resources = make_dataset(isolated / "d")
    content, message = corrupt(kind)
    (isolated / "d" / resources[0].filename).write_bytes(content)
    with pytest.raises(FashionClfError, match=message) as error:
        fmnist.load_fashion_mnist(isolated / "d", resources=resources)
    assert str(error.value).startswith(str(isolated / "d" / resources[0].filename))
    assert "\n" not in str(error.value)


def test_labels_out_of_range_are_refused(isolated):
    resources = list(make_dataset(isolated / "d"))
    raw = idx_bytes("labels", np.full(TEST, 10))
    (isolated / "d" / resources[3].filename).write_bytes(gzip.compress(raw))
    resources[3] = replace(resources[3], raw_sha256=hashlib.sha256(raw).hexdigest())
    with pytest.raises(FashionClfError, match="t10k-labels-idx1-ubyte.gz: label 10 is out of range"):
        fmnist.load_fashion_mnist(isolated / "d", resources=resources)


def gzip_bomb(megabytes: int) -> bytes:
    """A valid train-images header followed by `megabytes` of zeros, gzipped (about 1,000 times smaller)."""
    packer = zlib.compressobj(wbits=31)  # 31: the gzip container
    parts = [packer.compress(np.array([0x803, TRAIN, 28, 28], ">u4").tobytes())]
    parts += [packer.compress(bytes(1 << 20)) for _ in range(megabytes)]
    return b"".join([*parts, packer.flush()])


@pytest.mark.parametrize(
    "content",
    [gzip.compress(np.array([0x803, 2**31, 28, 28], ">u4").tobytes() + b"\0" * 64), gzip_bomb(64)],
    ids=["header declaring 2**31 images", "64 MB of content where 31 kB are expected"],
)
def test_oversized_files_are_refused_without_reading_them_whole(isolated, content):
    resources = make_dataset(isolated / "d")
    path = isolated / "d" / resources[0].filename
    path.write_bytes(content)
    tracemalloc.start()
    try:
        with pytest.raises(FashionClfError, match=f"^{path}: (declares|holds more than)"):
            fmnist.read_idx(path, resources[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * resources[0].raw_size + (1 << 20)


def test_a_missing_file_is_named(isolated):
    resources = make_dataset(isolated / "d")
    (isolated / "d" / resources[2].filename).unlink()
    with pytest.raises(FashionClfError, match="t10k-images-idx3-ubyte.gz .*file is missing"):
        fmnist.load_fashion_mnist(isolated / "d", resources=resources)


def test_look_up_order(isolated, monkeypatch):
    resources = make_dataset(isolated / "explicit")
    for place in ("env", "cache-home/fashionclf/fashion-mnist", "debian"):
        make_dataset(isolated / place)
    find = partial(fmnist.find_data_dir, resources=resources)
    assert find() == (fmnist.default_cache_dir(), "cache")
    monkeypatch.setenv("FASHIONCLF_DATA", str(isolated / "env"))
    assert find() == (isolated / "env", "FASHIONCLF_DATA")
    assert find(isolated / "explicit") == (isolated / "explicit", "--data-dir")
    monkeypatch.delenv("FASHIONCLF_DATA")
    (fmnist.default_cache_dir() / resources[0].filename).unlink()  # an incomplete cache is passed over
    assert find() == (isolated / "debian", "debian")


def test_an_explicit_folder_must_hold_the_files(isolated, monkeypatch):
    make_dataset(isolated / "debian")
    with pytest.raises(FashionClfError, match="nowhere .*folder does not exist"):
        fmnist.find_data_dir(isolated / "nowhere")
    monkeypatch.setenv("FASHIONCLF_DATA", str(isolated / "empty"))
    (isolated / "empty").mkdir()
    with pytest.raises(FashionClfError, match="from FASHIONCLF_DATA.*file is missing"):
        fmnist.find_data_dir()


def test_nothing_found_and_no_download_says_where_it_looked(isolated):
    with pytest.raises(FashionClfError, match="not found in .*cache-home.*debian.*--data-dir.*FASHIONCLF_DATA"):
        fmnist.load_fashion_mnist(download_missing=False)


def test_describe_is_json_ready(isolated):
    resources = make_dataset(isolated / "d")
    info = describe(fmnist.load_fashion_mnist(isolated / "d", resources=resources))
    assert json.loads(json.dumps(info)) == info
    assert info["origin"] == "--data-dir" and info["directory"] == str(isolated / "d")
    assert [(f["filename"], f["raw_sha256"], f["verified"]) for f in info["files"]] == [
        (r.filename, r.raw_sha256, True) for r in resources
    ]
    assert (info["train_size"], info["test_size"], len(info["classes"])) == (TRAIN, TEST, 10)
    assert info["splits"]["train"] == {"images": TRAIN, "from": resources[0].filename}
    assert info["input"] == {"preprocessing": "fashion-mnist", "channels": 1, "size": 28}


def test_download_from_a_local_mirror(isolated, mirrors):
    resources = make_dataset(isolated / "served")
    url = mirrors(isolated / "served")
    fmnist.download(isolated / "dest", mirrors=[url], resources=resources)
    for resource in resources:
        assert (isolated / "dest" / resource.filename).read_bytes() == (
            isolated / "served" / resource.filename
        ).read_bytes()
    assert sorted(p.name for p in (isolated / "dest").iterdir()) == sorted(r.filename for r in resources)


def test_load_downloads_into_the_cache_when_nothing_is_found(isolated, mirrors):
    resources = make_dataset(isolated / "served")
    data = fmnist.load_fashion_mnist(resources=resources, mirrors=[mirrors(isolated / "served")])
    assert data.origin == "download" and data.directory == fmnist.default_cache_dir()
    assert fmnist.find_data_dir(resources=resources) == (fmnist.default_cache_dir(), "cache")


def test_the_first_verified_mirror_wins(isolated, mirrors):
    resources = make_dataset(isolated / "good")
    make_dataset(isolated / "corrupt", seed=99)  # same names, other content: checksums fail
    truncated = isolated / "truncated"
    truncated.mkdir()
    for resource in resources:
        whole = (isolated / "good" / resource.filename).read_bytes()
        (truncated / resource.filename).write_bytes(whole[: len(whole) // 2])
    urls = [mirrors(isolated / "empty-404"), mirrors(isolated / "corrupt"), mirrors(truncated),
            mirrors(isolated / "good")]  # fmt: skip
    (isolated / "empty-404").mkdir()
    fmnist.download(isolated / "dest", mirrors=urls, resources=resources)
    assert len(fmnist.load_fashion_mnist(isolated / "dest", resources=resources).train) == TRAIN


def test_when_every_mirror_fails_the_error_lists_why_and_nothing_is_left(isolated, mirrors):
    make_dataset(isolated / "corrupt", seed=99)
    good = make_dataset(isolated / "reference")
    (isolated / "empty").mkdir()
    (isolated / "huge").mkdir()
    (isolated / "huge" / good[0].filename).write_bytes(bytes(2 * good[0].raw_size))
    urls = [
        mirrors(isolated / "empty"),
        mirrors(isolated / "corrupt"),
        mirrors(isolated / "huge"),
        "http://127.0.0.1:9/",
    ]
    dest = isolated / "dest"
    dest.mkdir()
    kept = dest / good[3].filename
    kept.write_bytes((isolated / "reference" / good[3].filename).read_bytes())
    before = kept.read_bytes()
    with pytest.raises(FashionClfError) as error:
        fmnist.download(dest, mirrors=urls, resources=good)
    message = str(error.value)
    assert message.startswith(f"{dest / good[0].filename}: download failed from every mirror")
    reasons = ["HTTP 404", "checksum mismatch", "answer is larger than", "127.0.0.1:9/: "]
    assert [message.index(reason) for reason in reasons] == sorted(message.index(reason) for reason in reasons)
    assert "\n" not in message
    assert [p.name for p in dest.iterdir()] == [kept.name]  # no partial or temporary file
    assert kept.read_bytes() == before


@pytest.mark.real_data
def test_the_real_dataset():
    if not all((fmnist.DEBIAN_DIR / r.filename).is_file() for r in fmnist.RESOURCES):
        pytest.skip(f"Fashion-MNIST is not installed in {fmnist.DEBIAN_DIR} (make test installs it)")
    data = fmnist.load_fashion_mnist(fmnist.DEBIAN_DIR, download_missing=False)
    assert data.train.images.shape == (60_000, 1, 28, 28) and data.test.images.shape == (10_000, 1, 28, 28)
    assert data.train.images.dtype == data.test.images.dtype == torch.uint8
    assert data.train.labels.dtype == data.test.labels.dtype == torch.int64
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    assert 0 < data.train.images.float().mean() / 255 < 1
    described = describe(data)
    assert [f["filename"] for f in described["files"]] == [r.filename for r in fmnist.RESOURCES]
    assert described["splits"]["test"] == {"images": 10_000, "from": "t10k-images-idx3-ubyte.gz"}
