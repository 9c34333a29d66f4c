"""Zero-shot, self-trained (--vote-run): the training photos labelled by the joint vote of two networks that never
saw them, and the head trained on those labels. No photo's label is read.

The pretrained network's ImageNet classes vote through the garment map, as the zero-shot head does. A Fashion-MNIST
run votes on the photos as the garment preprocessing converts them, for the classes to which the map gives
Fashion-MNIST classes ("fashion_mnist"): it has shirts and dresses, which ImageNet lacks or rarely shows. The ImageNet
vote decides between those classes together and the rest; inside them, the two votes' log-probabilities are mixed,
VOTE_WEIGHT on the Fashion-MNIST run's. Each vote is centred first: each class's mean log-score over the photos is
taken away, a calibration that needs no label (ImageNet scores shirts, through ties and suits, far below the rest).
Self-training takes two rounds: a head is trained on the most confident KEPT_SHARE of each class's photos by the joint
vote; its log-probabilities, added to the joint vote's, then label every photo, and the run's head is trained on the
most confident REFINED_SHARE of each class's photos by that sum. A head is trained, rather than the votes kept,
because the Fashion-MNIST vote needs the garment preprocessing (OpenCV's GrabCut), which no exported network holds:
the head learns the votes, and the run stays one network.

Chosen on clothing-dataset-small's train and validation splits (benchmarks/zero_shot_vote.py, benchmarks/photo_cv.py;
docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp
from torch import nn

from fashionclf import transfer
from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.datasets import Split
from fashionclf.errors import FashionClfError
from fashionclf.layers import ViewMean
from fashionclf.networks import predict_logits
from fashionclf.pretrained import imagenet_vote
from fashionclf.rundir import open_run

VOTE_WEIGHT = 0.4  # the Fashion-MNIST vote's share inside the classes it has
KEPT_SHARE = 0.5  # of each class's photos by the joint vote, those it is surest of
REFINED_SHARE = 0.7  # of each class's photos by round two's sum, those it is surest of


@dataclass(frozen=True)
class Votes:
    """Both votes on the same photos, and how the Fashion-MNIST classes reach ours."""

    imagenet: np.ndarray  # (photos, classes): log-scores
    fashion_mnist: np.ndarray  # (photos, its classes): probabilities
    to_ours: np.ndarray  # (its classes, classes): 1 where the map sends it to ours, each row summing to 1 or 0

    def of(self, photos: np.ndarray) -> Votes:
        """The votes on some of the photos (indices)."""
        return Votes(self.imagenet[photos], self.fashion_mnist[photos], self.to_ours)

    @property
    def shared(self) -> np.ndarray:
        """Our classes that the Fashion-MNIST vote reaches."""
        return self.to_ours.sum(0) > 0


def joint_scores(votes: Votes, weight: float = VOTE_WEIGHT, centred: bool = True) -> np.ndarray:
    """(photos, classes) log-scores: the ImageNet vote, and inside the shared classes the two votes mixed (each
    centred unless told otherwise: benchmarks/zero_shot_vote.py measures both)."""
    shared = votes.shared
    ours = log_softmax(votes.imagenet - votes.imagenet.mean(0) if centred else votes.imagenet, axis=1)
    if not shared.any():
        return ours
    mass = votes.fashion_mnist @ votes.to_ours[:, shared]
    theirs = np.log(mass / np.maximum(mass.sum(1, keepdims=True), 1e-12) + 1e-9)
    theirs = theirs - theirs.mean(0) if centred else theirs
    in_shared = logsumexp(ours[:, shared], axis=1, keepdims=True)
    joint = ours.copy()
    joint[:, shared] = in_shared + (1 - weight) * (ours[:, shared] - in_shared) + weight * theirs
    return joint


def most_confident(scores: np.ndarray, share: float = KEPT_SHARE) -> np.ndarray:
    """The photos (indices, in order) that the vote is surest of: `share` of each class's by it, at least one."""
    voted, confidence = scores.argmax(1), scores.max(1)
    kept = [
        chosen[np.argsort(-confidence[chosen], kind="stable")[: max(1, int(share * len(chosen)))]]
        for chosen in (np.flatnonzero(voted == c) for c in np.unique(voted))
    ]
    return np.sort(np.concatenate(kept))


def self_training_labels(votes: Votes) -> tuple[torch.Tensor, torch.Tensor]:
    """The photos to train on (indices) and their labels: the joint vote's, on the photos it is surest of."""
    scores = joint_scores(votes)
    kept = most_confident(scores)
    return torch.from_numpy(kept), torch.from_numpy(scores.argmax(1)[kept])


def refined_labels(learnt: np.ndarray, votes: Votes) -> tuple[torch.Tensor, torch.Tensor]:
    """Round two: the photos to train on (indices) and their labels, by the log-probabilities of a head trained on
    round one's labels (`learnt`, for every photo) added to the joint vote's; the surest REFINED_SHARE of each
    class's photos by that sum are kept."""
    refined = learnt + log_softmax(joint_scores(votes), axis=1)
    kept = most_confident(refined, REFINED_SHARE)
    return torch.from_numpy(kept), torch.from_numpy(refined.argmax(1)[kept])


def kept_line(votes: Votes, labels: torch.Tensor, classes: tuple[str, ...], vote_run: str) -> str:
    """What the log says of the photos kept to train on."""
    counts = ", ".join(f"{name} {int((labels == i).sum())}" for i, name in enumerate(classes))
    shared = ", ".join(name for name, is_shared in zip(classes, votes.shared, strict=True) if is_shared)
    return (f"zero-shot, self-trained: {len(labels):,} of {len(votes.imagenet):,} training photos kept, labelled by "
            f"the vote of ImageNet's classes joined by {vote_run}'s for {shared or 'no class'}, then by a head "
            f"trained on its surest photos ({counts}); no photo's label read")  # fmt: skip


def votes_on(
    variant: str, features: Split, photos: Split, vote_run: str, classes: tuple[str, ...], map_path: str | None
) -> Votes:
    """Both votes on the same photos: ImageNet's on their features (photos, views, features), the Fashion-MNIST
    run's on them as the garment preprocessing gives them (`photos`, in the same order)."""
    fashion_mnist, their_classes = fashion_mnist_vote(Path(vote_run), photos)
    return Votes(
        imagenet_scores(variant, features, classes, map_path),
        fashion_mnist,
        to_our_classes(classes, their_classes, map_path, vote_run),
    )


def imagenet_scores(variant: str, features: Split, classes: tuple[str, ...], map_path: str | None) -> np.ndarray:
    """The zero-shot head's log-scores of the photos' features, their views averaged."""
    head = imagenet_vote(variant, len(classes))
    transfer.set_votes(head, classes, map_path)
    return predict_logits(nn.Sequential(head, ViewMean()), features.images, 256).numpy().astype(np.float64)


def fashion_mnist_vote(vote_run: Path, photos: Split) -> tuple[np.ndarray, tuple[str, ...]]:
    """A Fashion-MNIST run's probabilities for the photos, and its classes."""
    model, classes = vote_model(vote_run)
    probabilities = torch.softmax(predict_logits(model, photos.images, 500), 1)
    return probabilities.numpy().astype(np.float64), classes


def vote_model(vote_run: Path) -> tuple[nn.Module, tuple[str, ...]]:
    """The run's model and its classes, once it is known to take Fashion-MNIST's input."""
    try:
        model, checkpoint = load_model(open_run(vote_run).best_checkpoint)
    except FashionClfError as exc:
        raise FashionClfError(f"--vote-run {exc}") from None
    spec = recorded_spec(checkpoint)
    if spec.input.domain != "fashion-mnist":
        raise FashionClfError(f"--vote-run {vote_run}: its model takes {spec.input.describe()} photos, not "
                              "Fashion-MNIST's 28x28 grayscale")  # fmt: skip
    return model, spec.classes


def to_our_classes(
    classes: tuple[str, ...], their_classes: tuple[str, ...], map_path: str | None, vote_run: str
) -> np.ndarray:
    """(their classes, ours) from the map's "fashion_mnist" entries; a Fashion-MNIST class mapped to several of ours
    gives each an equal part."""
    to_ours = np.zeros((len(their_classes), len(classes)))
    for column, (name, entry) in enumerate(transfer.map_entries(classes, map_path).items()):
        for theirs in entry.get("fashion_mnist", []):
            if theirs not in their_classes:
                raise FashionClfError(f"--vote-run {vote_run}: the map gives {name!r} the class {theirs!r}, which "
                                      f"its model lacks ({', '.join(their_classes)})")  # fmt: skip
            to_ours[their_classes.index(theirs), column] = 1
    return to_ours / np.maximum(to_ours.sum(1, keepdims=True), 1)
