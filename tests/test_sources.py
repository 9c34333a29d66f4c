"""Kaggle CSV files and folders of labelled photos, read into the same tensors as the IDX files."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fashionclf import sources
from fashionclf.data import CLASSES, Split
from fashionclf.errors import FashionClfError
from fashionclf.evaluate import evaluate_run
from fashionclf.inference import load_classifier
from fashionclf.sources import class_index, load_dataset, read_csv, read_photo_folder
from fashionclf.train import TrainConfig, train

from synthetic import CSV_HEADER, write_csv


def small_split(n=25, seed=0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
    return Split(images, torch.arange(n) % 10)


def test_a_csv_round_trips_to_the_same_tensors(tmp_path):
    split = small_split()
    write_csv(tmp_path / "small.csv", split)
    read = read_csv(tmp_path / "small.csv")
    assert torch.equal(read.images, split.images) and torch.equal(read.labels, split.labels)
    assert read.images.dtype == torch.uint8 and read.labels.dtype == torch.int64


def test_a_single_csv_is_split_so_no_image_is_trained_and_tested_on(tmp_path):
    images = torch.arange(500 * 784, dtype=torch.int64).reshape(500, 28, 28).remainder(251).to(torch.uint8)
    images[:, 0, 0], images[:, 0, 1] = torch.arange(500) % 256, torch.arange(500) // 256  # every image unique
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
        ("a huge header", "line 1: longer than 65,536 bytes, not a header of 785 columns (label and 784 pixels)"),
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
    with pytest.raises(FashionClfError, match="line 1: longer than 65,536 bytes"):
        read_csv(path)


@pytest.mark.parametrize("name", ["t-shirt_top", "T-shirt/top", "Ankle boot", "ankle-boot", "ANKLE_BOOT", "bag"])
def test_class_folder_names_are_forgiving(name):
    assert CLASSES[class_index(name)].replace("/", "").replace(" ", "").replace("-", "").lower() == (
        name.replace("/", "").replace(" ", "").replace("-", "").replace("_", "").lower()
    )


def write_photo_folder(root, images: np.ndarray, labels: np.ndarray, transform=lambda image: image) -> None:
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / CLASSES[label].replace("/", "_").replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        transform(Image.fromarray(pixels)).save(folder / f"{i:04d}.png")


def test_a_photo_folder_is_read_once_then_cached(tmp_path, monkeypatch):
    split = small_split(20)
    write_photo_folder(tmp_path / "photos", split.images.numpy(), split.labels.numpy())
    (tmp_path / "photos" / "Bag" / "notes.png").write_text("not a picture")
    first, key = read_photo_folder(tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert len(first) == 20  # the unreadable file is skipped
    assert sorted(first.labels.tolist()) == sorted(split.labels.tolist())

    def no_decoding(*_args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "open_image", no_decoding)
    second, same_key = read_photo_folder(tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert same_key == key


def test_a_picture_moved_to_another_class_folder_gets_its_new_label(tmp_path):
    split = small_split(20)
    write_photo_folder(tmp_path / "photos", split.images.numpy(), split.labels.numpy())
    before, _ = read_photo_folder(tmp_path / "photos", cache_dir=tmp_path / "cache")
    (tmp_path / "photos" / "Bag" / "0008.png").rename(tmp_path / "photos" / "Trouser" / "0008.png")
    after, _ = read_photo_folder(tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert torch.bincount(after.labels, minlength=10).tolist()[1] == torch.bincount(before.labels)[1] + 1
    assert torch.bincount(after.labels, minlength=10).tolist()[8] == torch.bincount(before.labels)[8] - 1


def test_a_sub_folder_that_names_no_class_lists_the_classes(tmp_path):
    (tmp_path / "photos" / "Socks").mkdir(parents=True)
    with pytest.raises(FashionClfError, match="sub-folder 'Socks' names no class; the classes are T-shirt/top, "):
        read_photo_folder(tmp_path / "photos")


@pytest.mark.real_data
def test_evaluate_on_a_photo_folder_agrees_with_the_tensors(trained_run, real_data, tmp_path):
    images, labels = real_data.test.images[:1000].numpy(), real_data.test.labels[:1000].numpy()
    write_photo_folder(tmp_path / "photos", images, labels)
    (tmp_path / "photos" / "Bag" / "notes.png").write_text("not a picture")
    on_tensors = evaluate_run(trained_run.root, data=real_data)  # the run's own test set: the same 1,000 first
    expected = (load_classifier(trained_run.root).probabilities(images).argmax(1) == labels).mean()
    result = subprocess.run(
        [sys.executable, "-m", "fashionclf", "evaluate", str(trained_run.root), "--data", str(tmp_path / "photos"),
         "--split", "all", "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    metrics = json.loads(result.stdout)  # pure JSON: the skipped file is reported on stderr
    assert "skipped" in result.stderr and "notes.png" in result.stderr
    assert metrics["images"] == 1000 and metrics["data"]["split"] == "all"
    assert abs(metrics["accuracy"] - expected) <= 0.01
    assert (trained_run.root / "evaluations" / "photos" / "metrics.json").is_file()
    assert json.loads(trained_run.metrics.read_text())["accuracy"] == on_tensors["accuracy"]  # not overwritten


@pytest.mark.real_data
def test_fine_tuning_on_a_photo_folder_raises_held_out_accuracy(trained_run, real_data, tmp_path):
    """Garments photographed sideways: the model has never seen them, a little fine-tuning teaches it."""
    images, labels = real_data.test.images[:600].numpy(), real_data.test.labels[:600].numpy()
    write_photo_folder(tmp_path / "sideways", images, labels, transform=lambda image: image.rotate(90))
    config = TrainConfig(epochs=3, batch_size=50, device="cpu", data=str(tmp_path / "sideways"),
                         init=str(trained_run.root), mix_fashion_mnist=600)  # fmt: skip
    run = train(config, tmp_path / "tuned", progress=False)
    summary = json.loads(run.finetune.read_text())
    assert summary["held_out"]["images"] == 96  # a fifth of the 480 pictures left after the test hold-out
    assert summary["held_out"]["after"] > summary["held_out"]["before"] + 0.1
    assert {"before", "after"} <= summary["fashion_mnist_test"].keys()
