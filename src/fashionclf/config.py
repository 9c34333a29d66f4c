"""Every setting of a training run, and the named recipes: presets of settings, recorded in config.json with every
value they set, so a published number can be reproduced with one command."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from fashionclf.errors import FashionClfError
from fashionclf.models import model_entry
from fashionclf.photolike import NAMES
from fashionclf.preprocess import InputFormat

# The names --optimizer and --schedule take, with the words the report uses for them.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with Nesterov momentum 0.9"}
SCHEDULES = {"constant": "constant", "onecycle": "one-cycle", "cosine": "cosine after a warm-up epoch"}

ROBUST_CORRUPTIONS = ("cut", "edge", "intensity", "background", "light", "occlude", "blur", "jpeg", "noise")

# Named presets of settings; the chosen one is recorded in config.json with every value it set.
RECIPES: dict[str, dict] = {
    # The report's recipe (Adam 1e-3, batch 100, cross-entropy, 5 epochs) on the cheaper step: channels-last, and
    # bf16 autocast where the device computes it natively (resolved to float32 elsewhere). --no-bf16
    # --no-channels-last runs it in float32 throughout, the report's arithmetic.
    "seed": {"channels_last": True, "bf16": True},
    # The report's accuracy in the least time: a cheaper step (channels-last, bf16), larger batches, and a one-cycle
    # schedule that reaches 90.3% in 2 epochs instead of 5.
    "fast": {
        "channels_last": True,
        "bf16": True,
        "optimizer": "adamw",
        "lr": 3e-3,
        "schedule": "onecycle",
        "batch_size": 256,
        "epochs": 2,
    },
    # The most from the unchanged FashionCNN found so far (2 cores, chosen by validation accuracy): AdamW with
    # decoupled weight decay 0.01, a one-cycle schedule, 2-pixel random crops and flips, the weights' moving average as
    # the model, 48 epochs: validation 93.80/93.60/93.06%, test 92.66/92.50/92.49% for seeds 0-2, 10-13 min each.
    # Tried and worse: weight decay 0.05 over 40 epochs (validation 93.20/93.38/93.10%, test 92.68/92.21/92.16%);
    # SGD with Nesterov momentum at 0.1 with label smoothing and random erasing (test 91.66%, underfits: the head,
    # linear layers with no activation between them, has little capacity to spare for hard augmentation); flips alone
    # (overfits: validation 93.16%); label smoothing 0.1 (seed 1: validation 93.16% against 93.38%). The head is the
    # cap: with ReLUs between its linear layers (model fashion_cnn_relu) the 40-epoch recipe reaches 93.88% test, the
    # mean of seeds 0-2.
    "best": {
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
    # The stronger model, trained as residual networks with BatchNorm usually are (2 cores: test 94.75%, 94.52% and
    # 94.57% for seeds 0-2, 27-32 min each). Widths 16 and 24 train in 9 and 19 min but stop at 94.28% and 94.48%.
    "resnet": {
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
    # Fashion-MNIST for real photos without training on any (measured on clothing-dataset-small through the class
    # map in docs/RESULTS.md): the garment preprocessing at predict and serve time, and batches corrupted to look
    # like photos after it (see photolike.py), a share of each batch per corruption; `best`'s optimizer, schedule,
    # weight decay, batch size and flips, without its crop padding and moving average; 25 epochs (15 measured worse
    # on the photos' validation split and on Fashion-MNIST's). Test accuracy stays above the report's.
    "robust": {
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
    # Photos (a folder of class folders of RGB photos, e.g. --data clothing-small), for a laptop: EfficientNet-Lite0
    # pretrained on ImageNet, frozen; each photo looked at whole and at its centre, and mirrored (four views at 288
    # px, from the photo fitted into 384 px); the views' mean- and max-pooled features computed once and cached; an
    # MLP head trained on them with AdamW one-cycle, weight decay 0.05, label smoothing, 30 epochs. Chosen by 5-fold
    # cross-validation over clothing-dataset-small's train and validation splits (docs/RESULTS.md): 91.8% +- 0.5,
    # against 88.7% for a linear head on the centre at 224 px and 90.8% for the MLP on two views at 224 px. The epochs
    # are fixed, so nothing is chosen on the validation split: the last epoch is kept and validation is left to
    # evaluate, unbiased.
    "photos": {
        "model": "efficientnet_lite0",
        "frozen": True,
        "validation_size": 0,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.05,
        "schedule": "onecycle",
        "label_smoothing": 0.1,
        "batch_size": 128,
        "epochs": 30,
    },
    # No labelled photos: the pretrained network's ImageNet classes, summed per class through the shipped map from
    # garment words to ImageNet classes (imagenet/garments.json, or --imagenet-map); nothing is trained.
    "zero-shot": {"model": "efficientnet_lite0", "model_args": {"head": "imagenet"}, "frozen": True, "epochs": 0},
    # Photos trained from scratch, for comparison: ResNet-9 for photos at 64x64 (96 px measured no better), SGD with
    # Nesterov momentum, one-cycle to 0.2, weight decay, label smoothing, random resized crops down to 35% of the
    # area, flips and colour jitter, batch 64, 30 epochs; predictions average the photo's and its mirror image's.
    # Measured in docs/RESULTS.md.
    "photos-scratch": {
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
}


