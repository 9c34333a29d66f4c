import json

import numpy as np
import pytest

from fashionclf.data import CLASSES
from fashionclf.evaluate import compute_metrics, evaluate_run
from fashionclf.train import TrainConfig, train

from synthetic import synthetic_data


def one_hot(predicted, confidence=0.9):
    probabilities = np.full((len(predicted), 10), (1 - confidence) / 9)
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_metrics_from_known_predictions():
    # 4 images of class 0 (3 right), 2 of class 1 (both right), 2 of class 2 (1 right, 1 called class 0).
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    metrics = compute_metrics(labels, one_hot(predicted), CLASSES)
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
    metrics = compute_metrics(labels, probabilities, CLASSES)
    assert metrics["accuracy"] == 0
    assert metrics["top2_accuracy"] == pytest.approx(0.5)


def test_macro_average_weighs_classes_equally():
    labels = np.array([0] * 9 + [1])
    predicted = np.array([0] * 9 + [0])
    metrics = compute_metrics(labels, one_hot(predicted), CLASSES)
    assert metrics["macro"]["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["weighted"]["recall"] == pytest.approx(0.9)


def test_evaluating_synthetic_data_still_counts_every_image(tmp_path):
    data = synthetic_data(train=300, test=123)
    run = train(TrainConfig(epochs=1, batch_size=50, validation_size=0), tmp_path / "r", data=data, progress=False)
    assert evaluate_run(run.root, data=data, batch_size=50)["images"] == 123
