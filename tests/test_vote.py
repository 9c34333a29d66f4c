import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from fashionclf import vote
from fashionclf.checkpoint import load_model
from fashionclf.config import RECIPES, TrainConfig
from fashionclf.datasets import Split
from fashionclf.errors import FashionClfError
from fashionclf.evaluate import evaluate_run
from fashionclf.files import file_sha256
from fashionclf.sources import load_dataset
from fashionclf.train import resume, train
from fashionclf.vote import Votes, joint_scores, most_confident, refined_labels, to_our_classes

from pictures import SAMPLE

CLASSES = ("shirt", "t-shirt", "shoes")  # the map gives the first two Fashion-MNIST classes, shoes none
FASHION_MNIST = ("T-shirt/top", "Shirt", "Sneaker")


def _votes(imagenet: list[list[float]], fashion_mnist: list[list[float]]) -> Votes:
    return Votes(np.log(imagenet), np.array(fashion_mnist), to_our_classes(CLASSES, FASHION_MNIST, None, "vote"))


def test_the_map_sends_fashion_mnist_classes_to_the_data_classes_that_name_them():
    assert to_our_classes(CLASSES, FASHION_MNIST, None, "vote").tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(FashionClfError, match="--vote-run runs/x: the map gives 'shirt' the class 'Shirt', which"):
        to_our_classes(CLASSES, ("T-shirt/top", "Sneaker"), None, "runs/x")


def test_the_fashion_mnist_vote_decides_inside_the_classes_it_has_and_imagenet_between_them_and_the_rest():
    # Photo 0: ImageNet leans to t-shirt, Fashion-MNIST is sure of a shirt; photo 1 is a shoe, which Fashion-MNIST
    # calls a t-shirt: its vote does not reach shoes.
    votes = _votes(
        [[0.4, 0.5, 0.1], [0.05, 0.05, 0.9], [0.3, 0.4, 0.3]],
        [[0.02, 0.97, 0.01], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3]],
    )
    assert joint_scores(votes, weight=0.0).argmax(1)[:2].tolist() == [1, 2]
    joint = joint_scores(votes)
    assert joint.argmax(1)[:2].tolist() == [0, 2]
    centred = log_softmax(votes.imagenet - votes.imagenet.mean(0), axis=1)
    np.testing.assert_allclose(joint[:, 2], centred[:, 2])  # a class outside Fashion-MNIST's keeps ImageNet's score
    np.testing.assert_allclose(joint_scores(votes, weight=0.0), centred)


def test_without_fashion_mnist_classes_the_vote_is_imagenet_centred():
    votes = Votes(np.log([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]]), np.ones((2, 3)) / 3, np.zeros((3, 3)))
    # Centred, the second photo's 0.3 is the more unusual: a prior that favours one class is taken away.
    assert joint_scores(votes).argmax(1).tolist() == [0, 1]


def test_the_most_confident_share_of_each_voted_class_is_kept():
    scores = np.log([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.7, 0.3]])
    assert most_confident(scores, 0.5).tolist() == [0, 2, 3]  # class 0: 2 of its 4, class 1: its one photo


def test_round_two_lets_a_confident_head_overturn_an_unsure_vote_and_keeps_the_surest_share(monkeypatch):
    # No Fashion-MNIST class: the joint vote is ImageNet's, centred. It calls photo 1 a class 0 (58%); the head of
    # round one is sure of class 1 there, and agrees with the vote elsewhere.
    votes = Votes(np.log([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.3, 0.7], [0.85, 0.15]]), np.zeros((5, 1)),
                  np.zeros((1, 2)))  # fmt: skip
    assert joint_scores(votes).argmax(1).tolist() == [0, 0, 1, 1, 0]
    learnt = np.log([[0.95, 0.05], [0.01, 0.99], [0.1, 0.9], [0.4, 0.6], [0.9, 0.1]])
    # Classes 0 (photos 0, 4) and 1 (photos 1, 2, 3) by the sum: 70% of each, at least one, the surest.
    kept, labels = refined_labels(learnt, votes)
    assert kept.tolist() == [0, 2, 3] and labels.tolist() == [0, 1, 1]
    monkeypatch.setattr(vote, "REFINED_SHARE", 1.0)
    assert refined_labels(learnt, votes)[1].tolist() == [0, 1, 1, 1, 0]


def test_zero_shot_with_a_vote_run_is_self_trained_as_photos_trains_its_head():
    config = TrainConfig.from_recipe("zero-shot", vote_run="runs/seed", data=str(SAMPLE))
    assert config.model_args == {"head": "mlp"} and config.validation_size == 0
    assert config.epochs == RECIPES["photos"].settings["epochs"]
    assert TrainConfig.from_recipe("zero-shot", vote_run="runs/seed", epochs=3).epochs == 3
    with pytest.raises(FashionClfError, match="--vote-run trains a frozen network's head"):
        TrainConfig.from_recipe("photos", vote_run="runs/seed", frozen=False)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_a_self_trained_run_reads_no_photo_label_and_is_an_ordinary_run(trained_run, own_cache, tmp_path):
    config = TrainConfig.from_recipe(
        "zero-shot", vote_run=str(trained_run.root), data=str(SAMPLE), image_size=64, epochs=3, device="cpu"
    )
    run = train(config, tmp_path / "voted", progress=False)
    data = load_dataset(SAMPLE, config.input)
    shuffled = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    relabelled = replace(data, train=Split(data.train.images, data.train.labels[shuffled]))
    again = train(config, tmp_path / "relabelled", data=relabelled, progress=False)
    weights, other = (load_model(each.best_checkpoint)[0].state_dict() for each in (run, again))
    assert all(torch.equal(weights[name], other[name]) for name in weights)
    assert "no photo's label read" in run.log.read_text()
    recorded = json.loads(run.config.read_text())["vote_run"]
    assert recorded["sha256"] == file_sha256(trained_run.best_checkpoint)
    assert len(json.loads(run.history_json.read_text())) == 3
    assert evaluate_run(run.root)["images"] == 20
    with pytest.raises(FashionClfError, match="its model takes 64x64 RGB photos, not Fashion-MNIST's"):
        train(replace(config, vote_run=str(run.root)), tmp_path / "photo-vote", progress=False)
    with pytest.raises(FashionClfError, match="--vote-run .*no-run"):
        train(replace(config, vote_run=str(tmp_path / "no-run")), tmp_path / "no-vote", progress=False)
    # Resumed, it votes again: with the weights it started with it goes on (here: nothing left to do), with
    # others it stops before anything.
    resume(run.root, progress=False)
    assert "nothing to resume: all 3 epochs are done" in run.log.read_text()
    record = json.loads(run.config.read_text())
    record["vote_run"]["sha256"] = "0" * 64
    run.config.write_text(json.dumps(record))
    with pytest.raises(FashionClfError, match=r"--vote-run .*best.pt has SHA-256 .*, but .*voted was started with "
                                              r"000000000000\.\.\.; put those weights back"):  # fmt: skip
        resume(run.root, progress=False)
