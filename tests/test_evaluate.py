import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from fashionclf import photos
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.evaluate import compute_metrics, evaluate_run, mapped_metrics, read_class_map
from fashionclf.files import file_sha256
from fashionclf.preprocess import FASHION_MNIST_CLASSES
from fashionclf.train import train

from pictures import SAMPLE
from synthetic import band_photos, csv_run, synthetic_data, synthetic_split, write_csv


def one_hot(predicted, confidence=0.9):
    probabilities = np.full((len(predicted), 10), (1 - confidence) / 9)
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_metrics_from_known_predictions():
    # 4 images of class 0 (3 right), 2 of class 1 (both right), 2 of class 2 (1 right, 1 called class 0).
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    metrics = compute_metrics(labels, one_hot(predicted), FASHION_MNIST_CLASSES)
    assert metrics["images"] == 8
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    per_class = {row["class"]: row for row in metrics["per_class"]}
    assert per_class["T-shirt/top"]["accuracy"] == pytest.approx(3 / 4)
    assert per_class["T-shirt/top"]["precision"] == pytest.approx(3 / 4)  # 4 predicted as class 0, 3 right
    assert per_class["Trouser"]["precision"] == pytest.approx(2 / 3)
    assert per_class["Trouser"]["recall"] == pytest.approx(1.0)
    assert per_class["Pullover"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert per_class["Dress"]["support"] == 0
    assert metrics["confusion_matrix"][0][:3] == [3, 1, 0]
    assert metrics["confusion_matrix"][2][:3] == [1, 0, 1]
    assert metrics["confusion_matrix_normalized"][0][:3] == [0.75, 0.25, 0.0]
    assert metrics["loss"] == pytest.approx(-(6 * np.log(0.9) + 2 * np.log(0.1 / 9)) / 8)
    json.dumps(metrics)  # the metrics object must be JSON-ready


def test_top2_counts_the_second_choice():
    labels = np.array([0, 1])
    probabilities = np.zeros((2, 10))
    probabilities[0, [3, 0]] = [0.6, 0.4]  # true class second: counts for top-2
    probabilities[1, [3, 4, 1]] = [0.5, 0.3, 0.2]  # true class third: does not
    metrics = compute_metrics(labels, probabilities, FASHION_MNIST_CLASSES)
    assert metrics["accuracy"] == 0
    assert metrics["top2_accuracy"] == pytest.approx(0.5)


def test_macro_average_weighs_classes_equally():
    labels = np.array([0] * 9 + [1])
    predicted = np.array([0] * 9 + [0])
    metrics = compute_metrics(labels, one_hot(predicted), FASHION_MNIST_CLASSES)
    assert metrics["macro"]["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["weighted"]["recall"] == pytest.approx(0.9)


def test_evaluating_synthetic_data_still_counts_every_image(tmp_path):
    data = synthetic_data(train=300, test=123)
    run = train(TrainConfig(epochs=1, batch_size=50, validation_size=0), tmp_path / "r", data=data, progress=False)
    assert evaluate_run(run.root, data=data, batch_size=50)["images"] == 123


def test_metrics_through_a_class_map():
    """Data classes ('top', 'shoes', 'hat') judged against a model's ('T-shirt/top', ..., 'Ankle boot')."""
    mapping = {"top": ["T-shirt/top", "Shirt"], "shoes": ["Sandal", "Sneaker", "Ankle boot"], "hat": []}
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 6, 3, 9, 2, 0, 1])  # top: right, right, wrong; shoes: right, wrong; hats left out
    metrics = mapped_metrics(labels, one_hot(predicted), ("top", "shoes", "hat"), FASHION_MNIST_CLASSES, mapping)
    assert metrics["images"] == 5 and metrics["left_out"] == {"hat": 2}
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert [(r["class"], r["accuracy"], r["support"]) for r in metrics["per_class"]] == [
        ("top", pytest.approx(2 / 3), 3),
        ("shoes", pytest.approx(1 / 2), 2),
    ]
    assert len(metrics["confusion_matrix"]) == 3 and len(metrics["confusion_matrix"][0]) == 10
    json.dumps(metrics)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    data = synthetic_data(train=300, test=100)
    return train(TrainConfig(epochs=1, batch_size=50, validation_size=0), tmp_path_factory.mktemp("r") / "run",
                 data=data, progress=False)  # fmt: skip


def write_band_folder(root, names: dict[str, list[int]]) -> None:
    """Synthetic pictures (bands of a model's classes) in folders of other names: folder -> bands it holds."""
    split = synthetic_data(train=10, test=200).test
    for folder, bands in names.items():
        (root / folder).mkdir(parents=True)
        for i in np.flatnonzero(np.isin(split.labels.numpy(), bands)):
            Image.fromarray(split.images[i, 0].numpy()).save(root / folder / f"{i}.png")


def test_evaluate_through_a_class_map_file(synthetic_run, tmp_path):
    write_band_folder(tmp_path / "photos", {"tops": [0, 6], "footwear": [5, 7, 9], "socks": [8]})
    (tmp_path / "map.json").write_text(json.dumps({"tops": ["T-shirt/top", "Shirt"],
                                                   "footwear": ["Sandal", "Sneaker", "Ankle boot"]}))  # fmt: skip
    metrics = evaluate_run(
        synthetic_run.root, data_path=tmp_path / "photos", split="all", class_map=tmp_path / "map.json"
    )
    assert metrics["left_out"] == {"socks": 20} and metrics["images"] == 100
    assert not metrics["data"]["trained_on"]  # other photos than the run's in-memory data, which recorded no files
    assert (synthetic_run.root / "evaluations" / "photos-all" / "figures" / "confusion_matrix.png").is_file()
    garment = evaluate_run(
        synthetic_run.root, data_path=tmp_path / "photos", split="all", class_map=tmp_path / "map.json",
        preprocessing="garment",
    )  # fmt: skip
    assert garment["data"]["preprocessing"] == "garment" and metrics["data"]["preprocessing"] == "fashion-mnist"
    assert (
        json.loads((synthetic_run.root / "evaluations" / "photos-all-garment" / "metrics.json").read_text()) == garment
    )
    with pytest.raises(FashionClfError, match="names 'Socks', a class the model lacks"):
        (tmp_path / "bad.json").write_text(json.dumps({"socks": ["Socks"]}))
        evaluate_run(synthetic_run.root, data_path=tmp_path / "photos", class_map=tmp_path / "bad.json")
    with pytest.raises(FashionClfError, match="are not the model's .* give --class-map"):
        evaluate_run(synthetic_run.root, data_path=tmp_path / "photos")


def test_the_shipped_clothing_small_map_names_only_fashion_mnist_classes():
    data_classes = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")
    mapping = read_class_map("clothing-small", data_classes, FASHION_MNIST_CLASSES)
    assert mapping["shoes"] == ["Sandal", "Sneaker", "Ankle boot"] and mapping["longsleeve"] == ["Pullover", "Shirt"]
    assert [name for name, targets in mapping.items() if not targets] == ["hat", "shorts", "skirt"]


def test_the_runs_data_replaced_since_training_is_refused_unless_allowed_and_then_recorded(tmp_path):
    run, csv = csv_run(tmp_path)
    recorded = file_sha256(csv)
    assert evaluate_run(run.root)["data_changed"] is False
    unchanged = run.metrics.read_text()
    write_csv(csv, synthetic_split(200, seed=7))  # other images under the same name
    found = file_sha256(csv)
    refusal = (
        f"{csv}: not the data {run.root} was trained on (data.csv has SHA-256 {found[:12]}..., recorded "
        f"{recorded[:12]}...); pass --allow-changed-data to evaluate it anyway, or train a new run"
    )
    with pytest.raises(FashionClfError, match=f"^{re.escape(refusal)}$"):
        evaluate_run(run.root)
    assert run.metrics.read_text() == unchanged
    with pytest.warns(FashionClfWarning, match="evaluate goes on, recorded as data_changed"):
        metrics = evaluate_run(run.root, allow_changed_data=True)
    assert metrics["data_changed"] is True
    assert metrics["data_changes"] == {"data.csv": {"recorded": recorded, "found": found}}
    assert json.loads(run.metrics.read_text()) == metrics


def test_a_changed_photo_is_named_by_its_split_but_another_preprocessing_is_no_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    band_photos(tmp_path / "photos", per_class=8)
    config = TrainConfig(epochs=1, batch_size=8, device="cpu", data=str(tmp_path / "photos"))
    run = train(config, tmp_path / "run", progress=False)
    # A split records its photos and classes, not the preprocessing: these photos, read by another one, are the run's.
    assert evaluate_run(run.root, preprocessing="garment")["data_changed"] is False
    # Nor the cache's version: a later fashionclf that decodes photos anew still knows them as the run's.
    monkeypatch.setattr(photos, "CACHE_VERSION", photos.CACHE_VERSION + 1)
    assert evaluate_run(run.root)["data_changed"] is False
    photo = next((tmp_path / "photos" / "validation" / "hat").iterdir())
    Image.fromarray(np.full((28, 28), 128, dtype=np.uint8)).save(photo)
    with pytest.raises(FashionClfError, match=r"\(validation photos has SHA-256 \w{12}\.\.\., recorded \w{12}\.\.\.\)"):
        evaluate_run(run.root)


def test_a_run_trained_on_every_split_is_measured_on_a_test_split_added_to_its_own_folder(tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE, folder)  # train/ and validation/
    config = TrainConfig.from_recipe("photos-scratch", epochs=1, batch_size=20, image_size=32, final=True,
                                     validation_size=0, device="cpu", data=str(folder))  # fmt: skip
    run = train(config, tmp_path / "run", progress=False)
    with pytest.raises(FashionClfError, match="trained on the validation split .* add a test/ split to its folder"):
        evaluate_run(run.root)
    shutil.copytree(SAMPLE / "validation", folder / "test")  # copies: which split is chosen is what is checked
    metrics = evaluate_run(run.root)  # the run's own folder, no --data
    assert (metrics["data"]["split"], metrics["data"]["trained_on"], metrics["data_changed"]) == ("test", False, False)
