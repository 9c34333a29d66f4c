"""Zero-shot, no photo's label used: the ImageNet vote alone, joined by a Fashion-MNIST model's vote, and a head
self-trained on the joint vote's most confident photos; on both splits of clothing-dataset-small.

    .venv/bin/python benchmarks/zero_shot_vote.py --fashion-mnist-run runs/robust [--photos DIR] [--out runs]

What `--recipe zero-shot` could become (see docs/RESULTS.md, "Pretrained photo models"); the labels are read only
to score each row. The rows:
  - the ImageNet vote: `--recipe zero-shot` as shipped (EfficientNet-Lite0's ImageNet classes through the garment map,
    four views);
  - joined by the Fashion-MNIST run's vote (garment preprocessing) where the class exists there (the shipped map
    clothing-small: shoes left to ImageNet, which gets 98% of them): the ImageNet vote decides between those classes
    and the others (hat, shorts, skirt, shoes), and inside them the two votes' log-probabilities are mixed, weight W
    on Fashion-MNIST's; "centred" takes from each class's log-score its mean over the photos (a calibration that
    needs no label: ImageNet scores shirts, through ties and suits, far below the rest);
  - self-trained: a logistic regression on the backbone's features (the views' mean, standardised), fitted to the
    joint vote's answers on its most confident SHARE of each class's photos, then asked about every photo.
Every setting printed is tried on these same photos, so the best row is the best of several: a point or so
optimistic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.config import TrainConfig
from fashionclf.evaluate import read_class_map
from fashionclf.models import predict_logits
from fashionclf.sources import load_dataset
from fashionclf.train import train
from fashionclf.transfer import features, split_logits

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "clothing-dataset-small"
LEFT_TO_IMAGENET = ("shoes",)
WEIGHTS = (0.0, 0.2, 0.4, 0.6)
SHARES = (0.3, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-mnist-run", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args()
    zero_shot = args.out / "zero-shot"
    if not (zero_shot / "history.json").is_file():
        train(TrainConfig.from_recipe("zero-shot", data=str(args.photos)), zero_shot)
    imagenet, pooled, labels, classes = imagenet_vote(zero_shot / "checkpoints" / "best.pt", args.photos)
    fashion, fashion_classes = fashion_mnist_vote(args.fashion_mnist_run / "checkpoints" / "best.pt", args.photos)
    class_map = read_class_map("clothing-small", tuple(classes), tuple(fashion_classes))
    joint = JointVote(classes, fashion_classes, class_map)
    print(f"{len(labels):,} photos (train and validation splits), {len(classes)} classes; no label used but to score")
    print(f"{'way':<58}{'accuracy':>10}" + "".join(f"{c[:9]:>10}" for c in classes))
    show("ImageNet vote (--recipe zero-shot)", imagenet.argmax(1), labels, classes)
    for centred in (False, True):
        for weight in WEIGHTS[1:]:
            name = f"+ Fashion-MNIST vote, W {weight:g}{', centred' if centred else ''}"
            show(name, joint(imagenet, fashion, weight, centred).argmax(1), labels, classes)
    standardised = StandardScaler().fit_transform(pooled)
    for weight in WEIGHTS:
        scores = joint(imagenet, fashion, weight, centred=True)
        for share in SHARES:
            name = f"self-trained on the top {share:.0%} of the vote (W {weight:g}, centred)"
            show(name, self_trained(standardised, scores, share), labels, classes)


def imagenet_vote(checkpoint: Path, photos: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The zero-shot run's class scores (log-probabilities), its backbone's pooled features (views averaged), the
    labels and class names, over the train and validation splits."""
    model, record = load_model(checkpoint)
    data = load_dataset(photos, recorded_spec(record).input)
    splits = (data.train, data.validation)
    scores = torch.cat([split_logits(model.eval(), split, 64, torch.device("cpu")) for split in splits])
    pooled = torch.cat([features(model, split, "photos").images.float().mean(1) for split in splits])
    labels = torch.cat([split.labels for split in splits])
    return log_softmax(scores.numpy(), axis=1), pooled.numpy(), labels.numpy(), list(data.classes)


def fashion_mnist_vote(checkpoint: Path, photos: Path) -> tuple[np.ndarray, list[str]]:
    """A Fashion-MNIST run's probabilities on the same photos, garment-preprocessed, and its class names."""
    model, record = load_model(checkpoint)
    spec = recorded_spec(record)
    data = load_dataset(photos, spec.input.using("garment"))
    logits = torch.cat([predict_logits(model.eval(), split.images, 500) for split in (data.train, data.validation)])
    return torch.softmax(logits, 1).numpy(), list(spec.classes)


class JointVote:
    """The ImageNet vote, and inside the classes that Fashion-MNIST also has (but LEFT_TO_IMAGENET) a mix of the two
    votes' log-probabilities; a Fashion-MNIST class mapped to several of them gives each an equal part."""

    def __init__(self, classes: list[str], fashion_classes: list[str], class_map: dict[str, list[str]]):
        shared = [c for c in classes if class_map.get(c) and c not in LEFT_TO_IMAGENET]
        self.shared = np.array([c in shared for c in classes])
        to_ours = np.zeros((len(fashion_classes), len(classes)))
        for j, name in enumerate(classes):
            for theirs in class_map.get(name, []) if name in shared else []:
                to_ours[fashion_classes.index(theirs), j] = 1
        self.to_ours = to_ours / np.maximum(to_ours.sum(1, keepdims=True), 1)

    def __call__(self, imagenet: np.ndarray, fashion: np.ndarray, weight: float, centred: bool) -> np.ndarray:
        ours = imagenet - imagenet.mean(0) if centred else imagenet
        ours = log_softmax(ours, axis=1)
        mass = fashion @ self.to_ours[:, self.shared]
        theirs = np.log(mass / mass.sum(1, keepdims=True) + 1e-9)
        theirs = theirs - theirs.mean(0) if centred else theirs
        in_shared = np.log(np.exp(ours[:, self.shared]).sum(1, keepdims=True))
        joint = ours.copy()
        joint[:, self.shared] = in_shared + (1 - weight) * (ours[:, self.shared] - in_shared) + weight * theirs
        return joint


def self_trained(features: np.ndarray, scores: np.ndarray, share: float) -> np.ndarray:
    """A logistic regression fitted to the vote's answers on its most confident `share` of each class's photos."""
    voted, confidence = scores.argmax(1), scores.max(1)
    kept = np.concatenate([
        chosen[np.argsort(-confidence[chosen])[: max(1, int(share * len(chosen)))]]
        for chosen in (np.flatnonzero(voted == c) for c in np.unique(voted))
    ])  # fmt: skip
    return LogisticRegression(C=0.01, max_iter=2000).fit(features[kept], voted[kept]).predict(features)


def show(name: str, predicted: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    per_class = "".join(f"{(predicted[labels == i] == i).mean():>10.1%}" for i in range(len(classes)))
    print(f"{name:<58}{(predicted == labels).mean():>10.2%}{per_class}", flush=True)


if __name__ == "__main__":
    main()
