"""Folders of labelled photos: any class names, split folders used as given, hold-outs where there are none, a
decoded and memory-mapped cache, and one-line errors for every way a folder can be laid out wrong."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fashionclf import photos, quantize
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.evaluate import evaluate_run
from fashionclf.inference import load_classifier, predict_files
from fashionclf.photos import read_photo_dataset
from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_INPUT, REACHED_AGAIN, InputFormat
from fashionclf.report import build_report
from fashionclf.serve import create_app
from fashionclf.train import train

from pictures import SAMPLE

SMALL_RGB = InputFormat("photo", 3, 32)


def fashion_mnist_name(label: int) -> str:
    """A folder name as a user might spell the class: 'T-shirt_top', 'Ankle-boot'."""
    return FASHION_MNIST_CLASSES[label].replace("/", "_").replace(" ", "-")


def write_photo_folder(root, images: np.ndarray, labels: np.ndarray, names=fashion_mnist_name, transform=None):
    """uint8 images (N, 1, H, W) or (N, 3, H, W) as PNG files, one folder per class."""
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0))
        (transform or (lambda x: x))(image).save(folder / f"{i:04d}.png")


def colour_photos(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Photos whose class is their colour: class k a solid hue on a grey floor."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = np.full((n, 3, 48, 40), 128, dtype=np.uint8)
    hues = rng.integers(0, 256, (classes, 3))
    for i, label in enumerate(labels):
        images[i, :, 8:40, 8:32] = hues[label][:, None, None]
    return images, labels


def write_splits(root, splits: dict[str, int], names=("hat", "shoes", "skirt")) -> None:
    for offset, (split, n) in enumerate(splits.items()):
        images, labels = colour_photos(n, len(names), seed=0)
        write_photo_folder(root / split, images, labels + 0 * offset, names=lambda k: names[k])


def test_a_photo_folder_is_read_once_then_cached(tmp_path, monkeypatch):
    images, labels = colour_photos(20, 4)
    write_photo_folder(tmp_path / "photos", images, labels, names=lambda k: ["a", "b", "c", "d"][k])
    (tmp_path / "photos" / "b" / "notes.png").write_text("not a picture")
    first = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert len(first.train) + len(first.test) == 20  # the unreadable file is skipped

    def no_decoding(*_args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(photos, "open_image", no_decoding)
    second = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)
    assert first.checksums == second.checksums


def test_the_cache_is_memory_mapped_and_keyed_by_the_preprocessing(tmp_path):
    write_splits(tmp_path / "photos", {"train": 12, "validation": 6})
    data = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    address = data.train.images.data_ptr()
    mapped = [line for line in open("/proc/self/maps") if line.rstrip().endswith("images.u8")]
    regions = [tuple(int(bound, 16) for bound in line.split()[0].split("-")) for line in mapped]
    assert any(start <= address < end for start, end in regions)  # read from disk as batches touch it
    larger = read_photo_dataset(tmp_path / "photos", InputFormat("photo", 3, 40), cache_dir=tmp_path / "cache")
    assert larger.train.images.shape == (12, 3, 40, 40)
    assert len(list((tmp_path / "cache").iterdir())) == 4  # each split in each format
    assert larger.checksums == data.checksums  # the same photos, whatever they are read into


def test_a_picture_moved_to_another_class_folder_gets_its_new_label(tmp_path):
    images, labels = colour_photos(20, 2)
    write_photo_folder(tmp_path / "photos", images, labels, names=lambda k: ["a", "b"][k])
    cache = tmp_path / "cache"
    before = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=cache).train
    moved = sorted((tmp_path / "photos" / "a").iterdir())[0]
    moved.rename(tmp_path / "photos" / "b" / moved.name)
    after = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=cache)
    counts = torch.bincount(torch.cat([after.train.labels, after.test.labels]), minlength=2).tolist()
    assert counts == [9, 11] and len(before) == 16


def test_any_class_names_and_colour_kept(tmp_path):
    write_splits(tmp_path / "photos", {"train": 12, "validation": 6}, names=("skirt", "hat", "Shoes"))
    data = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert data.classes == ("Shoes", "hat", "skirt")  # the folder names, sorted
    assert data.train.images.shape == (12, 3, 32, 32) and data.input == SMALL_RGB
    assert (data.train.images[:, 0] != data.train.images[:, 2]).any()  # not grayscale


def test_split_folders_are_used_as_given_and_evaluation_falls_back_to_validation(tmp_path):
    write_splits(tmp_path / "photos", {"train": 12, "val": 6})
    data = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert (len(data.train), len(data.validation), data.test) == (12, 6, None)
    assert data.evaluation_split[0] == "validation"
    assert data.split_origins["validation"] == "validation/ of photos (6 photos)"
    write_splits(tmp_path / "three", {"train": 12, "validation": 6, "test": 9})
    data = read_photo_dataset(tmp_path / "three", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 6, 9)
    assert data.evaluation_split[0] == "test"


def test_a_folder_without_splits_gets_a_seeded_stratified_test_hold_out(tmp_path):
    images, labels = colour_photos(50, 5)
    write_photo_folder(tmp_path / "photos", images, labels, names=lambda k: f"class{k}")
    data = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert (len(data.train), len(data.test), data.validation) == (40, 10, None)
    assert torch.bincount(data.test.labels).tolist() == [2] * 5
    again = read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")
    assert torch.equal(again.test.images, data.test.images)


@pytest.mark.parametrize("per_class", [1, 4])
def test_a_folder_too_small_to_hold_out_a_test_split_says_how_many_photos_a_class_needs(tmp_path, per_class):
    """One photo per class failed with scikit-learn's "test_size=0 should be ..." message."""
    images, labels = colour_photos(3 * per_class, 3)
    write_photo_folder(tmp_path / "photos", images, labels, names=lambda k: f"class{k}")
    message = (
        f"{tmp_path / 'photos'}: {3 * per_class} photos in 3 classes, too few to hold out a fifth as a test split with "
        f"one of each class (the smallest class has {per_class}); give every class at least 5 photos, and 7 to hold "
        "out a validation split too"
    )
    with pytest.raises(FashionClfError, match=f"^{re.escape(message)}$"):
        read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache")


def test_fashion_mnist_class_names_keep_fashion_mnists_classes(tmp_path):
    images = np.zeros((20, 1, 28, 28), dtype=np.uint8)
    images[:, :, 5:20, 5:20] = np.arange(20, dtype=np.uint8)[:, None, None, None] * 10
    write_photo_folder(tmp_path / "photos", images, np.array([0, 9] * 10))
    data = read_photo_dataset(tmp_path / "photos", FASHION_MNIST_INPUT, cache_dir=tmp_path / "cache")
    assert data.classes == FASHION_MNIST_CLASSES and set(torch.cat([data.train.labels, data.test.labels]).tolist()) == {
        0,
        9,
    }
    assert data.train.images.shape[1:] == (1, 28, 28)


def bad_layout(root, kind: str) -> None:
    good = {"train": 6, "validation": 3}
    if kind == "a class folder with no readable photo":
        write_splits(root, good)
        for path in (root / "train" / "hat").iterdir():
            path.write_text("not a photo")
    elif kind == "one class":
        write_splits(root, good, names=("hat",))
    elif kind == "photos loose beside the class folders":
        write_splits(root, good)
        next((root / "train" / "hat").iterdir()).rename(root / "train" / "stray.png")
    elif kind == "split folders with other classes":
        write_splits(root, good)
        (root / "validation" / "skirt").rename(root / "validation" / "scarf")
    elif kind == "an unknown split folder":
        write_splits(root, {**good, "extra": 3})
    else:
        root.mkdir()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("a class folder with no readable photo", "train/hat: no readable photo in this class folder"),
        ("one class", "1 class folder(s); a classifier needs at least two classes"),
        ("photos loose beside the class folders", "stray.png: a photo beside the class folders"),
        ("split folders with other classes", "validation/ has other classes than train/ (it lacks skirt; adds scarf)"),
        ("an unknown split folder", "extra: not a split folder (expected train, validation or val, test)"),
        ("an empty folder", "neither Fashion-MNIST files (IDX or CSV) nor class sub-folders of photos"),
    ],
)
def test_every_bad_layout_gets_one_line_and_exit_2(tmp_path, kind, message):
    root = tmp_path / "photos"
    bad_layout(root, kind)
    with pytest.raises(FashionClfError, match=re.escape(message)):
        read_photo_dataset(root, SMALL_RGB, cache_dir=tmp_path / "cache")
    result = subprocess.run([sys.executable, "-m", "fashionclf", "data", "--data", str(root)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    lines = result.stderr.strip().splitlines()  # skipped files, if any, are listed before the error
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("fashionclf: error: ") and message in lines[-1]
    assert all(line.startswith("skipped ") for line in lines[:-1])


def test_links_in_a_photo_folder_are_followed_once_and_what_is_skipped_is_said(tmp_path):
    write_splits(tmp_path / "photos", {"train": 6, "validation": 3})
    write_splits(tmp_path / "more", {"hats": 3}, names=("hat",))
    train = tmp_path / "photos" / "train"
    (train / "hat" / "more").symlink_to(tmp_path / "more" / "hats" / "hat")  # photos kept elsewhere: followed
    (train / "hat" / "shoes").symlink_to(train / "shoes")  # photos of another class: not a second time as hats
    (train / "hat" / "up").symlink_to(train)  # a loop
    (train / "hat" / "gone.png").symlink_to(tmp_path / "deleted.png")
    os.mkfifo(train / "shoes" / "pipe.png")
    (train / "skirt-old").symlink_to(tmp_path / "deleted")
    layout, skipped = photos.photo_layout(tmp_path / "photos")
    assert [path.parent.name for path in layout["train"]["hat"]] == ["hat", "hat", "more", "more", "more"]
    assert sorted(layout["train"]) == ["hat", "shoes", "skirt"] and len(layout["train"]["shoes"]) == 2
    assert skipped == [
        (str(train / "skirt-old"), f"broken symbolic link (to {tmp_path / 'deleted'})"),
        (str(train / "hat" / "gone.png"), f"broken symbolic link (to {tmp_path / 'deleted.png'})"),
        (str(train / "hat" / "shoes"), REACHED_AGAIN),
        (str(train / "hat" / "up"), REACHED_AGAIN),
        (str(train / "shoes" / "pipe.png"), "not a regular file (a FIFO)"),
    ]


def test_a_license_beside_the_split_folders_is_fine(tmp_path):
    write_splits(tmp_path / "photos", {"train": 6, "validation": 3})
    (tmp_path / "photos" / "LICENSE").write_text("CC0")
    assert read_photo_dataset(tmp_path / "photos", SMALL_RGB, cache_dir=tmp_path / "cache").classes


@pytest.mark.real_data
def test_evaluate_on_a_photo_folder_agrees_with_the_tensors(trained_run, real_data, tmp_path):
    images, labels = real_data.test.images[:400].numpy(), real_data.test.labels[:400].numpy()
    write_photo_folder(tmp_path / "photos", images, labels)
    (tmp_path / "photos" / "Bag" / "notes.png").write_text("not a picture")
    on_tensors = evaluate_run(trained_run.root, data=real_data)  # the run's own test set, of which these are the first
    expected = (load_classifier(trained_run.root).probabilities(images).argmax(1) == labels).mean()
    result = subprocess.run(
        [sys.executable, "-m", "fashionclf", "evaluate", str(trained_run.root), "--data", str(tmp_path / "photos"),
         "--split", "all", "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    metrics = json.loads(result.stdout)  # pure JSON: the skipped file is reported on stderr
    assert "skipped" in result.stderr and "notes.png" in result.stderr
    assert metrics["images"] == 400 and metrics["data"]["split"] == "all"
    assert abs(metrics["accuracy"] - expected) <= 0.01
    assert (trained_run.root / "evaluations" / "photos-all" / "metrics.json").is_file()
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


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """The photo model, small and briefly trained on the committed sample of clothing-dataset-small."""
    config = TrainConfig(model="photo_resnet9", model_args={"width": 8, "flip_average": True}, image_size=32,
                         epochs=2, batch_size=8,
                         optimizer="sgd", lr=0.05, schedule="onecycle", crop_scale=0.35, jitter=0.3, flip=True,
                         device="cpu", data=str(SAMPLE))  # fmt: skip
    return train(config, tmp_path_factory.mktemp("runs") / "photos", progress=False)


def test_a_photo_run_records_its_classes_and_input_and_reports_on_validation(photo_run):
    spec = json.loads(photo_run.config.read_text())["spec"]
    assert spec["classes"][:3] == ["dress", "hat", "longsleeve"] and len(spec["classes"]) == 10
    assert (spec["preprocessing"], spec["channels"], spec["size"]) == ("photo", 3, 32)
    metrics = evaluate_run(photo_run.root)
    assert metrics["images"] == 20 and metrics["data"]["split"] == "validation"  # the sample has no test/
    build_report(photo_run.root)
    assert "## Validation results" in photo_run.report_md.read_text()


def test_a_photo_run_predicts_and_serves_in_its_own_class_names(photo_run):
    classifier = load_classifier(photo_run.root)
    photo = next((SAMPLE / "validation" / "hat").iterdir())
    (prediction,) = predict_files(classifier, [photo], k=10)
    assert sorted(t["class"] for t in prediction.top) == sorted(classifier.spec.classes)
    assert prediction.model_input.shape == (3, 32, 32)
    client = TestClient(create_app(classifier))
    answer = client.post("/predict", files=[("files", (photo.name, photo.read_bytes()))]).json()
    assert answer["predictions"][0]["top_k"][0]["class"] in classifier.spec.classes
    assert client.get("/health").json()["input"] == {"preprocessing": "photo", "channels": 3, "size": 32}


def test_a_photo_run_quantizes_to_int8_that_serves_its_own_class_names(photo_run, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "QAT_STEPS", 10)  # 20 photos: one differing can start QAT; a few steps suffice
    run = tmp_path / "quantized"
    shutil.copytree(photo_run.root, run)
    summary = quantize.quantize_run(run, ("static",))
    static = summary["methods"]["static"]
    assert summary["test_images"] == 20 and static["files"]["onnxruntime"]["path"] == "quantized/static.onnx"
    assert abs(static["accuracy"] - summary["methods"]["fp32"]["accuracy"]) <= 0.1  # 20 photos: 2 may differ
    classifier = load_classifier(run, "int8")
    assert "static" in classifier.description
    photo = next((SAMPLE / "validation" / "hat").iterdir())
    (prediction,) = predict_files(classifier, [photo], k=3)
    assert prediction.top[0]["class"] in json.loads((run / "config.json").read_text())["spec"]["classes"]
