"""Every setting of a training run, each declared once (see settings.py: its option, check and report words are made
from it), and the named recipes: presets of settings, recorded in config.json with every value they set, so a
published number can be reproduced with one command.

The command line reads these declarations at every start, and checking a config imports no torch (the model registry
does not), so a bad option is refused in well under a second; the corruptions' names do import it, and are read
last, only where --corrupt is given."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fashionclf.errors import FashionClfError
from fashionclf.models import model_entry
from fashionclf.preprocess import InputFormat, list_preprocessings, preprocessing_entry
from fashionclf.settings import check, declared, default_of, option_name, setting

# The names --optimizer and --schedule take, with the words the report uses for them.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with Nesterov momentum 0.9"}
SCHEDULES = {"constant": "constant", "onecycle": "one-cycle", "cosine": "cosine after a warm-up epoch"}

ROBUST_CORRUPTIONS = ("cut", "edge", "intensity", "background", "light", "occlude", "blur", "jpeg", "noise")


@dataclass(frozen=True)
class Recipe:
    """A named preset of settings (recorded in config.json with every value it set), and what `train --help` says
    of it."""

    summary: str
    settings: dict


RECIPES: dict[str, Recipe] = {
    # The report's recipe (Adam 1e-3, batch 100, cross-entropy, 5 epochs) on the cheaper step: channels-last, and
    # bf16 autocast where the device computes it natively (resolved to float32 elsewhere). --no-bf16
    # --no-channels-last runs it in float32 throughout, the report's arithmetic.
    "seed": Recipe(
        "the report's recipe on the channels-last + bf16 step",
        {"channels_last": True, "bf16": True},
    ),
    # The report's accuracy in the least time: a cheaper step (channels-last, bf16), larger batches, and a one-cycle
    # schedule that reaches 90.3% in 2 epochs instead of 5.
    "fast": Recipe(
        "90.3% in 2 epochs (the same step, AdamW one-cycle, batch 256)",
        {
            "channels_last": True,
            "bf16": True,
            "optimizer": "adamw",
            "lr": 3e-3,
            "schedule": "onecycle",
            "batch_size": 256,
            "epochs": 2,
        },
    ),
    # The most from the unchanged FashionCNN found so far (2 cores, chosen by validation accuracy): AdamW with
    # decoupled weight decay 0.01, a one-cycle schedule, 2-pixel random crops and flips, the weights' moving average as
    # the model, 48 epochs: validation 93.80/93.60/93.06%, test 92.66/92.50/92.49% for seeds 0-2, 10-13 min each.
    # Tried and worse: weight decay 0.05 over 40 epochs (validation 93.20/93.38/93.10%, test 92.68/92.21/92.16%);
    # SGD with Nesterov momentum at 0.1 with label smoothing and random erasing (test 91.66%, underfits: the head,
    # linear layers with no activation between them, has little capacity to spare for hard augmentation); flips alone
    # (overfits: validation 93.16%); label smoothing 0.1 (seed 1: validation 93.16% against 93.38%). The head is the
    # cap: with ReLUs between its linear layers (model fashion_cnn_relu) the 40-epoch recipe reaches 93.88% test, the
    # mean of seeds 0-2.
    "best": Recipe(
        "48 epochs of AdamW one-cycle, weight decay, flips and a moving average of the weights",
        {
            "channels_last": True,
            "bf16": True,
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.01,
            "schedule": "onecycle",
            "crop_padding": 2,
            "flip": True,
            "ema": 0.999,
            "batch_size": 128,
            "epochs": 48,
        },
    ),
    # The stronger model, trained as residual networks with BatchNorm usually are (2 cores: test 94.75%, 94.52% and
    # 94.57% for seeds 0-2, 27-32 min each). Widths 16 and 24 train in 9 and 19 min but stop at 94.28% and 94.48%.
    "resnet": Recipe(
        "the ResNet-9 model with its own recipe, for the best accuracy",
        {
            "model": "resnet9",
            "channels_last": True,
            "bf16": True,
            "optimizer": "sgd",
            "lr": 0.1,
            "weight_decay": 5e-4,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "crop_padding": 2,
            "flip": True,
            "batch_size": 256,
            "epochs": 20,
        },
    ),
    # Fashion-MNIST for real photos without training on any (measured on clothing-dataset-small through the class
    # map in docs/RESULTS.md): the garment preprocessing at predict and serve time, and batches corrupted to look
    # like photos after it (see photolike.py), a share of each batch per corruption; `best`'s optimizer, schedule,
    # weight decay, batch size and flips, without its crop padding and moving average; 25 epochs (15 measured worse
    # on the photos' validation split and on Fashion-MNIST's). Test accuracy stays above the report's.
    "robust": Recipe(
        "Fashion-MNIST with photo-like corruptions and the garment preprocessing, for real photos",
        {
            "channels_last": True,
            "bf16": True,
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.01,
            "schedule": "onecycle",
            "flip": True,
            "corrupt": {"pair": 0.5, "affine": 0.3, **dict.fromkeys(ROBUST_CORRUPTIONS, 0.15)},
            "preprocessing": "garment",
            "batch_size": 128,
            "epochs": 25,
        },
    ),
    # Photos (a folder of class folders of RGB photos, e.g. --data clothing-small), for a laptop: EfficientNet-Lite0
    # pretrained on ImageNet, frozen; each photo looked at whole and at its centre, and mirrored (four views at 288 px,
    # from the photo fitted into 384 px); the views' mean- and max-pooled features computed once and cached; an MLP head
    # trained on them with AdamW one-cycle, weight decay 0.05, label smoothing, 30 epochs. Chosen by 5-fold cross-
    # validation over clothing-dataset-small's train and validation splits (docs/RESULTS.md): 91.5% +- 0.2 (each fold
    # trained by this project's loop; 91.8% +- 0.5 in another order of batches), against 88.7% for a linear head on the
    # centre at 224 px and 90.9% for the MLP on two views at 224 px. The epochs are fixed and the last is kept, so the
    # recipe needs no validation split: the model trains on the train and validation splits together (--final), and its
    # figure is the cross-validated one; --no-final leaves a folder's validation split to evaluate.
    "photos": Recipe(
        "a folder of RGB photos (--data): EfficientNet-Lite0 pretrained on ImageNet, frozen, an MLP head on cached "
        "features, minutes on a laptop",
        {
            "model": "efficientnet_lite0",
            "frozen": True,
            "final": True,
            "validation_size": 0,
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 0.05,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "batch_size": 128,
            "epochs": 30,
        },
    ),
    # Photos, the most accuracy within reason: the same network and views as `photos`, every layer fine-tuned on
    # augmented photos (random resized crops down to half the area, colour jitter) with AdamW one-cycle; bf16 and
    # channels-last where the device has them; the train and validation splits together, as `photos`. About 12
    # hours on 2 AVX2 cores, 86 s on a GPU (docs/RESULTS.md).
    "photos-best": Recipe(
        "photos, with every layer of the same network fine-tuned on augmented photos: for a GPU",
        {
            "model": "efficientnet_lite0",
            "frozen": False,
            "final": True,
            "validation_size": 0,
            "optimizer": "adamw",
            "lr": 3e-4,
            "weight_decay": 0.05,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "crop_scale": 0.5,
            "jitter": 0.2,
            "channels_last": True,
            "bf16": True,
            "batch_size": 32,
            "epochs": 12,
        },
    ),
    # No labelled photos: the pretrained network's ImageNet classes, summed per class through the shipped map from
    # garment words to ImageNet classes (imagenet/garments.json, or --imagenet-map); nothing is trained.
    "zero-shot": Recipe(
        "photos without labels: the network's ImageNet classes through a map of garment words (with --vote-run, a "
        "Fashion-MNIST run's vote too, learnt by a self-trained head)",
        {"model": "efficientnet_lite0", "model_args": {"head": "imagenet"}, "frozen": True, "epochs": 0},
    ),
    # Photos trained from scratch, for comparison: ResNet-9 for photos at 64x64 (96 px measured no better), SGD with
    # Nesterov momentum, one-cycle to 0.2, weight decay, label smoothing, random resized crops down to 35% of the
    # area, flips and colour jitter, batch 64, 30 epochs; predictions average the photo's and its mirror image's.
    # Measured in docs/RESULTS.md.
    "photos-scratch": Recipe(
        "photos, photo_resnet9 trained from scratch on them, for comparison",
        {
            "model": "photo_resnet9",
            "model_args": {"flip_average": True},
            "image_size": 64,
            "channels_last": True,
            "bf16": True,
            "optimizer": "sgd",
            "lr": 0.2,
            "weight_decay": 5e-4,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "crop_scale": 0.35,
            "jitter": 0.3,
            "flip": True,
            "batch_size": 64,
            "epochs": 30,
        },
    ),
}


# zero-shot with --vote-run: self-trained (vote.py). The head is the MLP that `photos` trains, trained as `photos`
# trains it, in two rounds on labels of the training photos that the joint vote, then the vote and round one's head
# give; the last epoch is kept, so nothing is chosen on the validation split's labels, which evaluate alone reads.
SELF_TRAINED = {"model_args": {"head": "mlp"}} | {
    name: RECIPES["photos"].settings[name]
    for name in ("validation_size", "optimizer", "lr", "weight_decay", "schedule", "label_smoothing", "batch_size",
                 "epochs")
}  # fmt: skip

PHOTO_SIZES = range(16, 513, 16)  # --image-size of a photo model; Fashion-MNIST's models take 28 alone

# Bounds that several settings share. NaN fails every comparison, so every bound; inf fails these.
NOT_NEGATIVE = (lambda v: 0 <= v < math.inf, "0 or more")
SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")

# The groups of settings: the panels of `train --help`, and the clauses of the report's recipe sentence.
MODEL, DATA, OPTIMIZATION, AUGMENTATION, SPEED = "Recipe and model", "Data", "Optimization", "Augmentation", "Speed"
RECIPE_HELP = "; ".join(f"{name}: {recipe.summary}" for name, recipe in RECIPES.items()) + ". Details: docs/recipes.md."


def name_and_share(item: str) -> tuple[str, float]:
    """One --corrupt item, NAME=P."""
    name, _, share = item.partition("=")
    try:
        return name, float(share)
    except ValueError:
        raise FashionClfError(f"--corrupt {item}: expected NAME=P, P a number in [0, 1]") from None


def _corruptions_in_words(shares: dict, _: object) -> str | None:
    return f"photo-like corruptions ({', '.join(f'{name} {p:g}' for name, p in shares.items())})" if shares else None


@dataclass
class TrainConfig:
    """Every setting of a run; saved to config.json and read back by --resume. Defaults are the report's recipe in
    float32 throughout; recipes (`from_recipe`) set the rest. Checks that one setting alone decides are declared with
    it; those between settings are in __post_init__."""

    recipe: str = setting("seed", RECIPE_HELP, MODEL, choices=tuple(RECIPES))
    model: str = setting("fashion_cnn", "A registered model (`fashionclf models`).", MODEL)
    # No option: a model gets its defaults, those a recipe sets, or with --init those of the run it starts from.
    model_args: dict = setting({}, "The model's arguments (dropout, width, flip_average, head).", MODEL)
    image_size: int | None = setting(
        None, "Side of a photo model's square input.", MODEL, default_words="the recipe's, or the model's"
    )
    init: str | None = setting(
        None, "Fine-tune: start from this run's best weights (a new head where the classes differ).", MODEL, path=True
    )
    preprocessing: str | None = setting(
        None,
        "How pictures become the model's input, by a preprocessing that gives its kind of input. "
        + " ".join(f"{name}: {preprocessing_entry(name).description}" for name in list_preprocessings()),
        MODEL,
        default_words="the model's",
    )
    imagenet_map: str | None = setting(
        None, "Zero-shot: a JSON map of garment words to ImageNet classes (and Fashion-MNIST's, for --vote-run).",
        MODEL, path=True, default_words="the shipped one",
    )  # fmt: skip
    vote_run: str | None = setting(
        None,
        "Zero-shot, self-trained: a Fashion-MNIST run (make run's, or --recipe robust) whose vote joins ImageNet's "
        "where the map gives a class Fashion-MNIST classes; the head is trained on the joint vote's labels of the "
        "training photos, none of theirs read.",
        MODEL,
        path=True,
        words="the head trained on the labels of a vote of ImageNet's classes joined by the Fashion-MNIST run {}, "
        "no photo's label read",
    )
    data: str | None = setting(
        None,
        "The four IDX .gz files' folder, a Kaggle CSV file, a folder of the train and test CSVs, a folder of class "
        "folders of photos (or of train/, validation/ and test/ folders of them), or a public photo set by name "
        "(clothing-small).",
        DATA,
        path=True,
        aliases=("--data-dir",),
        default_words="look up Fashion-MNIST's IDX files",
    )
    validation_size: int | None = setting(
        None,
        "Images held out for validation; 0 turns it off.",
        DATA,
        bound=NOT_NEGATIVE,
        default_words="the data's own validation split, else 5000, or a fifth of a training set under 25,000 images; "
        "photos: 0",
    )
    final: bool = setting(
        False,
        "The model to keep: train on the data's validation split too (its recipe chosen by cross-validation "
        "before); evaluate it on photos it never saw.",
        DATA,
        words="the training and validation splits trained on together (the final model)",
    )
    mix_fashion_mnist: int = setting(
        0, "Fine-tune: mix this many Fashion-MNIST training images in, against forgetting.", DATA,
        bound=NOT_NEGATIVE,
    )  # fmt: skip
    optimizer: str = setting(
        "adam", "adam, adamw or sgd (Nesterov momentum 0.9).", OPTIMIZATION, choices=OPTIMIZERS,
        words=lambda name, _: OPTIMIZERS[name],
    )  # fmt: skip
    lr: float = setting(
        1e-3, "Peak learning rate.", OPTIMIZATION, bound=(lambda v: 0 < v < math.inf, "a positive number"),
        words=lambda lr, values: f"learning rate {lr:g} ({SCHEDULES[values['schedule']]})",
    )  # fmt: skip
    schedule: str = setting(  # the report says it with the learning rate
        "constant", "constant, onecycle, or cosine (one epoch of linear warm-up, then cosine to 0).", OPTIMIZATION,
        choices=SCHEDULES,
    )  # fmt: skip
    weight_decay: float = setting(
        0.0, "Weight decay (decoupled with adamw).", OPTIMIZATION,
        bound=NOT_NEGATIVE, words="weight decay {:g}",
    )  # fmt: skip
    label_smoothing: float = setting(
        0.0, "Label smoothing of the cross-entropy loss.", OPTIMIZATION,
        bound=(lambda v: 0 <= v < 1, "in [0, 1)"), words="label smoothing {:g}",
    )  # fmt: skip
    batch_size: int = setting(
        100, "Images per step.", OPTIMIZATION, bound=(lambda v: v >= 1, "at least 1"),
        words=lambda size, _: f"batch {size}",
    )  # fmt: skip
    micro_batch: int | None = setting(
        None,
        "Forward and backward this many images of a batch at a time, their gradients summed: the same step in less "
        "memory (BatchNorm normalises each part alone).",
        OPTIMIZATION,
        bound=(lambda v: v >= 1, "at least 1"),
        default_words="the whole batch",
    )
    # Its least value depends on the model (0 for a pretrained one as it is): checked in __post_init__.
    epochs: int = setting(5, "Passes over the training split.", OPTIMIZATION, words=lambda n, _: f"{n} epochs")
    seed: int = setting(
        0, "Seeds the weights, the hold-out, and each epoch's order and augmentation.", OPTIMIZATION,
        bound=(lambda v: 0 <= v < 2**32, "in [0, 2^32)"),  # scikit-learn's hold-out takes no other
        words=lambda seed, _: f"seed {seed}",
    )  # fmt: skip
    ema: float = setting(
        0.0, "Decay of a moving average of the weights (e.g. 0.999), validated and saved as best; 0: off.",
        OPTIMIZATION, bound=(lambda v: 0 <= v < 1, "a decay in [0, 1)"),
        words="a moving average of the weights (decay {:g}) as the model",
    )  # fmt: skip
    frozen: bool = setting(
        False, "A pretrained model: train its head alone, on its backbone's features computed once per photo and "
        "view and cached.", OPTIMIZATION, words="a frozen backbone (its head trained on cached features)",
    )  # fmt: skip
    crop_padding: int = setting(
        0, "Augment: random crop after padding by N pixels.", AUGMENTATION,
        bound=NOT_NEGATIVE, words="random crops after {}-pixel padding",
    )  # fmt: skip
    flip: bool = setting(False, "Augment: flip half the images.", AUGMENTATION, words="horizontal flips")
    erase: float = setting(
        0.0, "Augment: probability of erasing a random rectangle.", AUGMENTATION,
        bound=(lambda v: 0 <= v <= 1, "a probability in [0, 1]"), words="random erasing (p = {:g})",
    )  # fmt: skip
    crop_scale: float = setting(
        0.0, "Augment: random resized crops down to this share of the area; 0: off.", AUGMENTATION,
        bound=SHARE, words="random resized crops down to {:.0%} of the area",
    )  # fmt: skip
    rotate: float = setting(
        0.0, "Augment: rotate by up to this many degrees.", AUGMENTATION,
        bound=NOT_NEGATIVE, words="rotations by up to {:g} degrees",
    )  # fmt: skip
    jitter: float = setting(
        0.0, "Augment: brightness, contrast and saturation scaled by up to +-this.", AUGMENTATION,
        bound=SHARE, words="colour jitter of up to +-{:g}",
    )  # fmt: skip
    corrupt: dict = setting(
        {},
        "Augment Fashion-MNIST to look like photos: NAME=P corrupts a share P of the images (repeatable; names: "
        "pair, affine, cut, edge, intensity, background, light, occlude, blur, jpeg, noise).",
        AUGMENTATION,
        item=name_and_share,
        words=_corruptions_in_words,
    )
    channels_last: bool = setting(
        False, "NHWC activations: oneDNN's convolutions and pooling run faster on them.", SPEED,
        words="channels-last layout",
    )  # fmt: skip
    bf16: bool = setting(
        False,
        "bfloat16 autocast of the forward pass where the device computes it natively (weights and optimizer stay "
        "float32); --no-bf16 --no-channels-last: the report's float32 arithmetic.",
        SPEED,
        words=lambda bf16, _: "bf16 autocast (weights and optimizer in float32)" if bf16 else "float32 arithmetic",
    )
    compile: bool = setting(False, "torch.compile the training step; eager where it cannot build.", SPEED)
    device: str = setting("auto", "auto (CUDA when present), cpu or cuda.", SPEED)

    def __post_init__(self) -> None:
        for each, _ in declared(TrainConfig):
            check(TrainConfig, each.name, getattr(self, each.name))
        entry = model_entry(self.model)
        if self.epochs < (0 if entry.pretrained else 1):
            least = "0 (a pretrained model as it is)" if entry.pretrained else "1"
            raise FashionClfError(f"--epochs must be at least {least}, got {self.epochs}")
        if entry.input.domain == "photo" and self.image_size is not None and self.image_size not in PHOTO_SIZES:
            raise FashionClfError(f"--image-size must be a multiple of 16 from 16 to 512, got {self.image_size}")
        entry.input.using(self.preprocessing)
        if self.final and self.validation_size:
            raise FashionClfError(
                f"--final trains on every labelled split: --validation-size {self.validation_size} cannot apply "
                "(add --no-final to hold images out)"
            )
        if self.mix_fashion_mnist and not self.init:
            raise FashionClfError("--mix-fashion-mnist goes with --init (fine-tuning)")
        if self.frozen:
            self._check_frozen(entry.pretrained)
        if self.vote_run and (not self.frozen or self.model_args.get("head") == "imagenet"):
            raise FashionClfError("--vote-run trains a frozen network's head on the votes: use it with --recipe "
                                  "zero-shot")  # fmt: skip
        self._check_corruptions(entry.input.domain)  # last: the corruptions' names import torch

    def _check_corruptions(self, domain: str) -> None:
        if not self.corrupt:
            return
        if domain != "fashion-mnist":
            raise FashionClfError("--corrupt imitates photos in Fashion-MNIST's 28x28 grayscale: not for photo models")
        from fashionclf.photolike import NAMES

        unknown = set(self.corrupt) - set(NAMES)
        if unknown or not all(isinstance(p, int | float) and 0 <= p <= 1 for p in self.corrupt.values()):
            raise FashionClfError(f"--corrupt takes NAME=P, P in [0, 1], NAME one of {', '.join(NAMES)}")

    def _check_frozen(self, pretrained: bool) -> None:
        """A frozen backbone's features are computed once per photo: nothing that changes pixels per epoch fits (every
        augmentation, declared or to come), nor the moving average, compiling or mixing in images."""
        if not pretrained:
            raise FashionClfError(f"--frozen needs a pretrained model; {self.model} is not one")
        per_epoch = [each.name for each, declared_as in declared(TrainConfig) if declared_as.group == AUGMENTATION]
        per_epoch += ["ema", "compile", "mix_fashion_mnist"]
        if set_options := [option_name(name) for name in per_epoch if getattr(self, name)]:
            raise FashionClfError(f"--frozen trains on cached features: {', '.join(set_options)} cannot apply")

    @property
    def input(self) -> InputFormat:
        """The input the run's pictures are brought to: the model's, at `image_size`, by `preprocessing`."""
        return model_entry(self.model).spec(size=self.image_size).input.using(self.preprocessing)

    @classmethod
    def from_recipe(cls, recipe: str = "seed", **settings) -> TrainConfig:
        """The recipe's settings (zero-shot's self-trained ones with --vote-run), then `settings` over them."""
        refined = SELF_TRAINED if recipe == "zero-shot" and settings.get("vote_run") else {}
        return cls(
            **{**(RECIPES[recipe].settings if recipe in RECIPES else {}), **refined, **settings, "recipe": recipe}
        )

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def default_in_words(name: str) -> str:
    """What `train --help` says of a setting's default: the recipe's where a recipe sets it, and seed's value."""
    each, declared_as = next((each, declared_as) for each, declared_as in declared(TrainConfig) if each.name == name)
    if declared_as.default_words:
        return declared_as.default_words
    default = default_of(each)
    if any(name in recipe.settings for recipe in RECIPES.values()):
        return f"the recipe's; seed: {_shown(RECIPES['seed'].settings.get(name, default))}"
    return _shown(default)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value in (None, {}) else f"{value:g}" if isinstance(value, float) else str(value)


def settings_file(path: Path) -> dict[str, Any]:
    """The settings --config reads: a run's config.json (its "train" object), or a JSON object of settings. Each is
    checked here on its own, so that a bad one is told with the file's name."""
    where = f"--config {path}"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FashionClfError(f"{where}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # not JSON, or not UTF-8
        raise FashionClfError(f"{where}: not valid JSON ({exc})") from None
    if isinstance(values, dict) and isinstance(values.get("train"), dict):
        # A run records every setting: one it lacks came after it, so it trained without it (not the recipe's).
        values = {each.name: default_of(each) for each, _ in declared(TrainConfig)} | values["train"]
    if not isinstance(values, dict):
        raise FashionClfError(f"{where}: expected a JSON object of settings, or a run's config.json")
    known = [each.name for each, _ in declared(TrainConfig)]
    if unknown := [name for name in values if name not in known]:
        raise FashionClfError(f"{where}: unknown setting {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    for name, value in values.items():
        try:
            check(TrainConfig, name, value)
        except FashionClfError as exc:
            raise FashionClfError(f"{where}: {exc}") from None
    return values
