"""Zero-shot, no photo's label used: the ImageNet vote alone, joined by a Fashion-MNIST model's vote, and a head
self-trained on the joint vote's most confident photos; on both splits of clothing-dataset-small.

    .venv/bin/python benchmarks/zero_shot_vote.py --fashion-mnist-run runs/robust [--photos DIR]

How `--recipe zero-shot --vote-run` was chosen (fashionclf/vote.py; docs/RESULTS.md, "Pretrained photo models"); the
labels are read only to score each row. The rows:
  - the ImageNet vote: `--recipe zero-shot` as shipped (EfficientNet-Lite0's ImageNet classes through the garment map,
    four views);
  - joined by the Fashion-MNIST run's vote (garment preprocessing) where the garment map gives the class
    Fashion-MNIST classes (shoes are left to ImageNet, which gets 98% of them): the ImageNet vote decides between
    those classes and the others (hat, shorts, skirt, shoes), and inside them the two votes' log-probabilities are
    mixed, weight W on Fashion-MNIST's; "centred" takes from each class's log-score its mean over the photos (a
    calibration that needs no label: ImageNet scores shirts, through ties and suits, far below the rest). The
    recipe's vote (fashionclf/vote.py) is the centred one at W 0.4;
  - self-trained: a logistic regression on the backbone's features (the views' mean, standardised), fitted to the
    joint vote's answers on its most confident SHARE of each class's photos, then asked about every photo.
Every setting printed is tried on these same photos, so the best row is the best of several: a point or so
optimistic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from fashionclf import datasets, vote
from fashionclf.config import TrainConfig
from fashionclf.models import ModelSpec, create_model
from fashionclf.preprocess import FASHION_MNIST_INPUT
from fashionclf.pretrained import PhotoTransfer
from fashionclf.sources import load_dataset
from fashionclf.transfer import features

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "clothing-dataset-small"
WEIGHTS = (0.0, 0.2, 0.4, 0.6)
SHARES = (0.3, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-mnist-run", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    args = parser.parse_args()
    pooled, labels, classes, variant = imagenet_features(args.photos)
    garment = load_dataset(args.photos, FASHION_MNIST_INPUT.using("garment"))
    photos = datasets.concatenate(garment.train, garment.validation)
    votes = vote.votes_on(variant, pooled, photos, str(args.fashion_mnist_run), classes, None)
    print(f"{len(labels):,} photos (train and validation splits), {len(classes)} classes; no label used but to score")
    print(f"{'way':<58}{'accuracy':>10}" + "".join(f"{c[:9]:>10}" for c in classes))
    show("ImageNet vote (--recipe zero-shot)", votes.imagenet.argmax(1), labels, classes)
    for centred in (False, True):
        for weight in WEIGHTS[1:]:
            name = f"+ Fashion-MNIST vote, W {weight:g}{', centred' if centred else ''}"
            show(name, vote.joint_scores(votes, weight, centred).argmax(1), labels, classes)
    standardised = StandardScaler().fit_transform(pooled.images.float().mean(1).numpy())
    for weight in WEIGHTS:
        scores = vote.joint_scores(votes, weight)
        for share in SHARES:
            name = f"self-trained on the top {share:.0%} of the vote (W {weight:g}, centred)"
            show(name, self_trained(standardised, scores, share), labels, classes)


def imagenet_features(photos: Path) -> tuple[datasets.Split, np.ndarray, tuple[str, ...], str]:
    """`--recipe zero-shot`'s network on the train and validation splits: its backbone's pooled features (photos,
    views, features; cached, as the recipes cache them), the labels, the class names and the network's variant."""
    config = TrainConfig.from_recipe("zero-shot", data=str(photos))
    data = load_dataset(photos, config.input)
    assert data.validation is not None, f"{photos} has no validation split"
    model = create_model(config.model, ModelSpec(data.classes, data.input), **config.model_args)
    assert isinstance(model, PhotoTransfer)
    model.load_imagenet_weights()
    splits = (data.train, data.validation)
    pooled = datasets.concatenate(*(features(model, split, "photos") for split in splits))
    return pooled, pooled.labels.numpy(), data.classes, model.variant


def self_trained(features: np.ndarray, scores: np.ndarray, share: float) -> np.ndarray:
    """A logistic regression fitted to the vote's answers on its most confident `share` of each class's photos:
    a quick stand-in for the recipe's MLP head (benchmarks/real_photos.py runs the recipe itself)."""
    kept = vote.most_confident(scores, share)
    return LogisticRegression(C=0.01, max_iter=2000).fit(features[kept], scores.argmax(1)[kept]).predict(features)


def show(name: str, predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    per_class = "".join(f"{(predicted[labels == i] == i).mean():>10.1%}" for i in range(len(classes)))
    print(f"{name:<58}{(predicted == labels).mean():>10.2%}{per_class}", flush=True)


if __name__ == "__main__":
    main()
