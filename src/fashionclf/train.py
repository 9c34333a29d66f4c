"""Training: one plain loop, a checkpoint after every epoch, and exact resume on CPU.

The data order of epoch e is drawn from a generator seeded with (seed, e), and the global RNG (dropout) is saved
with each checkpoint, so a run resumed from its last checkpoint ends with the same weights as one never stopped.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from fashionclf import datasets, distributed, transfer, vote
from fashionclf.augment import augment, photo_augment
from fashionclf.checkpoint import (
    build_model,
    load_checkpoint,
    load_model,
    load_resumable,
    model_header,
    recorded_spec,
    save_checkpoint,
)
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256
from fashionclf.models import ModelSpec, model_entry
from fashionclf.networks import count_parameters, predict_logits
from fashionclf.photolike import FOOTWEAR, corrupt
from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_INPUT
from fashionclf.pretrained import HeadOnFeatures, ImageNetVote, MLPHead, PhotoTransfer
from fashionclf.provenance import SHOWN, run_dataset
from fashionclf.rundir import RunDir, locked, open_run, read_json, write_json, write_text
from fashionclf.runtime import bf16_supported, environment, resolve_device
from fashionclf.sources import load_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Training:
    """What one training of a run holds fixed: its settings, its model's spec, its directory, the device, and whether
    progress bars are shown. Every layer of the loop takes it, beside the state that changes."""

    config: TrainConfig
    spec: ModelSpec
    run: RunDir
    device: torch.device
    progress: bool = True

    def log(self, message: str) -> None:
        _log(self.run, message)


@dataclass
class TrainState:
    """What an epoch boundary needs to carry on: the resume point of a run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    network: nn.Module  # what the training step calls: `model`, or under torchrun its DistributedDataParallel wrapper
    uncompiled: nn.Module | None = None  # with --compile: the network before torch.compile, for the fallback
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    ema: AveragedModel | None = None
    next_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    best_val_accuracy: float = -1.0
    frozen: bool = False  # the step trains model.head on cached features of the frozen backbone

    @property
    def evaluated(self) -> nn.Module:
        """The weights best.pt keeps: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def validated(self) -> nn.Module:
        """What validation runs on the validation split: the head alone on features when the backbone is frozen."""
        return HeadOnFeatures(cast(PhotoTransfer, self.model)) if self.frozen else self.evaluated


def train(config: TrainConfig, out: Path, data: datasets.Dataset | None = None, progress: bool = True) -> RunDir:
    """Train a new run into `out` (which must not hold a run yet) and return its run directory."""
    run = RunDir(Path(out))
    with _writing(run, "fashionclf train"):
        _take(run)
        config = _with_model(config)
        if config.vote_run:  # refused now, not after minutes of features
            vote.vote_model(Path(config.vote_run))
        data = data or load_dataset(config.data, config.input)
        _train(*_for_data(config, data), run, data, progress, resuming=False)
    return run


def _for_data(config: TrainConfig, data: datasets.Dataset) -> tuple[TrainConfig, ModelSpec]:
    """The settings resolved for `data` (`_resolved`), and the spec of the model trained on it."""
    return _resolved(config, data), ModelSpec(data.classes, data.input).using(config.preprocessing)


@contextmanager
def scratch_training(config: TrainConfig, data: datasets.Dataset) -> Iterator[Training]:
    """What `fashionclf train` holds fixed while it trains `config` on `data`, in a scratch run directory (where the
    loop would log: a compile that falls back, say): for benchmarks that call parts of the loop."""
    config, spec = _for_data(config, data)
    with tempfile.TemporaryDirectory() as scratch:
        yield Training(config, spec, RunDir(Path(scratch)), resolve_device(config.device), progress=False)


def resume(out: Path, data: datasets.Dataset | None = None, progress: bool = True) -> RunDir:
    """Continue a stopped run from its last checkpoint, with the settings it was started with."""
    run = open_run(Path(out))
    with _writing(run, "fashionclf train --resume"):
        _check_resumable(run)
        config, spec = _recorded_config(run), recorded_spec(read_json(run.config))
        if config.vote_run:
            _check_same_voter(run, config.vote_run)
        # Epochs on changed data would mix two data sets in one run: no way on but the data it started on.
        data = data or run_dataset(run, spec.input, "resume", way_out="put back the data it started on")[0]
        _train(config, spec, run, data, progress, resuming=True)
    return run


def _train(
    config: TrainConfig, spec: ModelSpec, run: RunDir, data: datasets.Dataset, progress: bool, resuming: bool
) -> None:
    """Train and resume alike: a new run records its config.json and starts at epoch 1, a resumed one goes on from
    its last.pt. The order of the steps that draw random numbers is the same for both, so a resumed run ends with
    the weights of one never stopped."""
    splits = _splits(config, data)
    distributed.check_batches(len(splits[0]), config.batch_size)
    if config.frozen and distributed.world_size() > 1:
        raise FashionClfError("--frozen trains a small head on one process: run it without torchrun")
    if config.compile and config.micro_batch and distributed.world_size() > 1:
        # Processes whose slices of the last batch split into different numbers of parts would all-reduce a
        # different number of times: no_sync keeps it to once a step, but torch.compile does not trace no_sync.
        raise FashionClfError("--micro-batch under torchrun runs eagerly: drop --compile")
    with distributed.process_group(resolve_device(config.device)) as device:
        training = Training(config, spec, run, device, progress)
        if not resuming and distributed.is_main():
            write_json(run.config, _run_record(config, spec, device, data))
        with _resume_hint_on_interrupt(run):
            state = _new_state(training, _steps_per_epoch(config, splits))
            splits = _frozen_features(training, state, splits)
            if resuming and run.last_checkpoint.exists():
                # Loaded on the CPU: the RNG state must stay a CPU tensor; load_state_dict moves weights to the device.
                _restore(state, load_resumable(run.last_checkpoint))
            if resuming and state.next_epoch > config.epochs:
                training.log(f"nothing to resume: all {config.epochs} epochs are done")
                return
            training.log(_starting(training, state, resuming))
            _fit(training, state, splits)
    if config.init and distributed.is_main():
        write_json(run.finetune, finetune_summary(RunDir(Path(config.init)), config, run, splits[1], device))


def _starting(training: Training, state: TrainState, resuming: bool) -> str:
    config, where = training.config, f"{training.device}{distributed.describe()}"
    if resuming:
        return f"resuming at epoch {state.next_epoch} of {config.epochs} on {where}"
    parameters = count_parameters(state.model)
    return f"training {config.model} ({parameters:,} parameters) on {where}, {config.epochs} epochs"


def _writing(run: RunDir, holder: str):
    """The run directory's lock, taken by the process that writes it (rank 0 under torchrun)."""
    return locked(run.root, holder) if distributed.is_main() else nullcontext()


def _take(run: RunDir) -> None:
    """A new run goes into a directory without a run, or takes over one that a start which failed before its first
    epoch's end left (a config.json, a log): nothing of it is lost, and it must not trap --out."""
    if not run.config.exists():
        return
    if _epoch_files(run):
        raise FashionClfError(f"{run.root}: already holds a run; use --resume {run.root} or another --out")
    _log(run, f"{run.root}: an earlier start finished no epoch here; training anew, its config.json replaced")


def _epoch_files(run: RunDir) -> list[str]:
    """The files the end of an epoch writes that the run holds."""
    written = {"checkpoints/last.pt": run.last_checkpoint, "history.json": run.history_json,
               "checkpoints/best.pt": run.best_checkpoint}  # fmt: skip
    return [name for name, path in written.items() if path.exists()]


def _recorded_config(run: RunDir) -> TrainConfig:
    """The settings in config.json; ones its checks refuse (a start that failed on them) are named with the way out."""
    try:
        return TrainConfig.from_dict(read_json(run.config)["train"])
    except FashionClfError as exc:
        way_out = "" if _epoch_files(run) else f"; no epoch finished: train anew with --out {run.root}, other options"
        raise FashionClfError(f"{run.config}: {exc}{way_out}") from None


def _check_resumable(run: RunDir) -> None:
    """Without last.pt a run can resume only from its start, which is exact only if no epoch had finished."""
    if run.last_checkpoint.exists():
        return
    if finished := _epoch_files(run):
        raise FashionClfError(
            f"{run.root}: checkpoints/last.pt is missing, but {' and '.join(finished)} show finished epochs; "
            "resuming would start again from epoch 1. Restore last.pt, or train a new run with another --out"
        )


def _with_model(config: TrainConfig) -> TrainConfig:
    """A fine-tuned run takes the model, its arguments and its input size from the run it starts from."""
    if not config.init:
        return config
    checkpoint = load_checkpoint(open_run(Path(config.init)).best_checkpoint)
    size = recorded_spec(checkpoint).input.size
    return replace(config, model=checkpoint["model"], model_args=checkpoint["model_args"], image_size=size)


def _resolved(config: TrainConfig, data: datasets.Dataset) -> TrainConfig:
    """The settings with what they depend on filled in: bf16 where the device has it, the input size, and the
    validation size (the data's own validation split, or a hold-out sized for its training split)."""
    values = asdict(config)
    if config.bf16 and not bf16_supported(resolve_device(config.device)):
        values["bf16"] = False  # emulated bfloat16 is slower than float32: not worth it on this machine
    if config.frozen:
        values["channels_last"] = values["bf16"] = False  # the step is a small MLP on features
    values["image_size"] = data.input.size
    if config.final:
        values["validation_size"] = 0  # every labelled split is trained on
        values["final"] = data.validation is not None  # without a validation split, nothing is joined
    elif config.validation_size is None and data.validation is not None:
        values["validation_size"] = len(data.validation)
    elif config.validation_size is None:
        values["validation_size"] = 5000 if len(data.train) >= 25_000 else len(data.train) // 5
    if config.mix_fashion_mnist and (data.classes, data.input.domain) != (
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_INPUT.domain,
    ):
        raise FashionClfError("--mix-fashion-mnist needs data in Fashion-MNIST's classes and 28x28 grayscale")
    return TrainConfig(**values)


def _run_record(config: TrainConfig, spec: ModelSpec, device: torch.device, data: datasets.Dataset) -> dict:
    """config.json: every setting, the model's spec, the environment, where the data came from, and the weights
    that voted for the labels (--vote-run)."""
    record = {"train": asdict(config), "spec": spec.as_dict(), "environment": environment(device),
              "data": _described(config, data)}  # fmt: skip
    if config.vote_run:
        record["vote_run"] = _voter(config.vote_run)
    return record


def _voter(vote_run: str) -> dict[str, str]:
    """The voting run's weights: its best checkpoint and their SHA-256."""
    checkpoint = open_run(Path(vote_run)).best_checkpoint
    return {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}


def _check_same_voter(run: RunDir, vote_run: str) -> None:
    """A resumed self-trained run votes again: other weights would give it other labels halfway through."""
    recorded = read_json(run.config).get("vote_run", {}).get("sha256")  # none before the checksum was recorded
    vote.vote_model(Path(vote_run))  # a voting run gone or replaced by another kind: one line naming --vote-run
    found = _voter(vote_run)
    if recorded is not None and found["sha256"] != recorded:
        raise FashionClfError(
            f"--vote-run {vote_run}: {found['checkpoint']} has SHA-256 {found['sha256'][:SHOWN]}..., but "
            f"{run.root} was started with {recorded[:SHOWN]}...; put those weights back, or train a new run"
        )


def _described(config: TrainConfig, data: datasets.Dataset) -> dict:
    """The data's provenance, with where the validation split came from and the splits trained on."""
    described = datasets.describe(data)
    described["trained_on"] = ["train", "validation"] if config.final and data.validation is not None else ["train"]
    if data.validation is None and config.validation_size:
        described["splits"]["validation"] = {
            "images": config.validation_size,
            "from": f"a seeded (seed {config.seed}), stratified hold-out of the training split",
        }
        described["splits"]["train"]["images"] -= config.validation_size
    return described


def _steps_per_epoch(config: TrainConfig, splits: tuple[datasets.Split, datasets.Split | None]) -> int:
    return math.ceil(len(splits[0]) / config.batch_size)


def _new_state(training: Training, steps_per_epoch: int) -> TrainState:
    config, device = training.config, training.device
    torch.manual_seed(config.seed)
    model = build_model(model_header(config.model, config.model_args, training.spec))
    if config.init is not None:
        _start_from(model, load_checkpoint(RunDir(Path(config.init)).best_checkpoint), training)
    elif model_entry(config.model).pretrained:
        _start_pretrained(cast(PhotoTransfer, model), training)
    head = cast(nn.Module, model.head) if config.frozen else None
    if head is not None:
        model.requires_grad_(False)
        head.requires_grad_(True)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    model = distributed.sync_batchnorm(model, device)
    optimizer = _optimizer(config, head or model)
    # Every process keeps the same global RNG (dropout), so rank 0's state in last.pt resumes all of them.
    network = distributed.parallel(model, device)
    # Buffers too: BatchNorm's running statistics must belong to the averaged weights, not the last ones.
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema), use_buffers=True) if config.ema else None
    scheduler = _scheduler(config, optimizer, steps_per_epoch)
    if head is not None:
        return TrainState(model, optimizer, head, None, scheduler, frozen=True)
    if config.compile:
        return TrainState(model, optimizer, cast(nn.Module, torch.compile(network)), network, scheduler, ema)
    return TrainState(model, optimizer, network, None, scheduler, ema)


def _start_pretrained(model: PhotoTransfer, training: Training) -> None:
    """The packaged ImageNet weights; for the zero-shot head, its votes from the class map."""
    model.load_imagenet_weights()
    if isinstance(model.head, ImageNetVote):
        votes = transfer.set_votes(model.head, training.spec.classes, training.config.imagenet_map)
        for name, imagenet in votes.items():
            training.log(f"zero-shot: {name} is scored by the ImageNet classes {', '.join(imagenet)}")


def _start_from(model: nn.Module, checkpoint: dict, training: Training) -> None:
    """Load every tensor of another run's weights whose name and shape fit; the rest (the head, for another class
    set; the first layer, for other channels) keeps its fresh initialisation, and the log names it."""
    own = model.state_dict()
    fitting = {k: v for k, v in checkpoint["state_dict"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    fresh = ", ".join(key for key in own if key not in fitting) or "none"
    training.log(f"started from {len(fitting)} of {len(own)} tensors of the --init run; fresh: {fresh}")


def ema_with_warmup(decay: float):
    """An exponential moving average whose decay grows as min(decay, (1 + n) / (10 + n)) over the first updates,
    as TensorFlow's ExponentialMovingAverage does. A constant 0.999 would still give the random initial weights 18%
    of the average after 1,700 steps: on ResNet-9, whose weights shrink fast under weight decay, that average
    classified no better than chance."""

    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        step = float(updates)
        get_ema_multi_avg_fn(min(decay, (1 + step) / (10 + step)))(averaged, current, updates)

    return average


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    lr, decay = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay, momentum=0.9, nesterov=True)
    adam = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return adam(model.parameters(), lr=lr, weight_decay=decay)


def _scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped after every batch; --lr is the peak rate."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.schedule == "cosine":
        warmup = min(steps_per_epoch, total - 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_warmup_cosine, warmup=warmup, total=total))
    return None


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _frozen_features(
    training: Training, state: TrainState, splits: tuple[datasets.Split, datasets.Split | None]
) -> tuple[datasets.Split, datasets.Split | None]:
    """With a frozen backbone, the splits as its cached features: the training split one row per view (each a
    sample of the head), the validation split (photos, views, features) (the head averages a photo's views); the
    head's standardisation measured on them, and the schedule stretched over the views' steps."""
    if not state.frozen:
        return splits
    started = time.perf_counter()
    config, model = training.config, cast(PhotoTransfer, state.model)
    if config.epochs == 0:  # nothing to train: the validation photos' features alone
        return splits[0], None if splits[1] is None else transfer.features(model, splits[1], "validation photos")
    train_split, val_split = (
        None if split is None else transfer.features(model, split, name)
        for split, name in zip(splits, ("training photos", "validation photos"), strict=True)
    )
    assert train_split is not None  # a training split always exists
    training.log(f"features of {len(train_split):,} + {len(val_split or []):,} photos x {train_split.images.shape[1]} "
                 f"views ready in {time.perf_counter() - started:.1f} s")  # fmt: skip
    if config.vote_run:
        train_split = _voted(training, model, train_split)
    return _head_rows(training, state, train_split), val_split


def _head_rows(training: Training, state: TrainState, features: datasets.Split) -> datasets.Split:
    """The training photos' features one row per view (each a sample of the head); the head's standardisation
    measured on them (on a new start) and the schedule stretched over their steps."""
    model = cast(PhotoTransfer, state.model)
    if isinstance(model.head, MLPHead) and state.next_epoch == 1:
        transfer.fit_standardisation(model, features)
    views = features.images.shape[1]
    rows = datasets.Split(features.images.flatten(0, 1), features.labels.repeat_interleave(views))
    state.scheduler = _scheduler(training.config, state.optimizer, _steps_per_epoch(training.config, (rows, None)))
    return rows


def trained_head(training: Training, features: datasets.Split) -> nn.Module:
    """A new model's head trained on the photos' cached `features` as the run trains its own, every epoch, with
    nothing validated or saved: the head on features (`HeadOnFeatures`), in eval mode. Self-training's first round,
    and each fold of benchmarks/photo_cv.py."""
    state = _new_state(training, 1)
    rows = _head_rows(training, state, features)
    for epoch in range(1, training.config.epochs + 1):
        train_epoch(training, state, rows, epoch)
    return state.validated.eval()


def _voted(training: Training, model: PhotoTransfer, features: datasets.Split) -> datasets.Split:
    """The training photos' features labelled by self-training on the joint vote, in two rounds (vote.py): round
    one's head is trained as the run's own is, by a state of its own."""
    started, config = time.perf_counter(), training.config
    assert config.vote_run is not None
    photos = _vote_photos(config, len(features))
    votes = vote.votes_on(model.variant, features, photos, config.vote_run, training.spec.classes,
                          config.imagenet_map)  # fmt: skip
    voted = self_trained(training, features, votes)
    training.log(f"{vote.kept_line(votes, voted.labels, training.spec.classes, config.vote_run)} "
                 f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    return voted


def self_trained(training: Training, features: datasets.Split, votes: vote.Votes) -> datasets.Split:
    """The photos' features that self-training's two rounds keep, labelled by them (vote.py): round one's head,
    trained on the joint vote's surest photos, scores them all for round two. No label of `features` is read."""
    kept, labels = vote.self_training_labels(votes)
    first = trained_head(training, datasets.Split(features.images[kept], labels))
    learnt = F.log_softmax(predict_logits(first, features.images, training.config.batch_size, training.device), 1)
    kept, labels = vote.refined_labels(learnt.double().numpy(), votes)
    return datasets.Split(features.images[kept], labels)


def _vote_photos(config: TrainConfig, count: int) -> datasets.Split:
    """The training photos as the Fashion-MNIST vote sees them: read again from --data by the garment preprocessing,
    and split as the run's photos were (the same files, so the same order and hold-out)."""
    if config.data is None:
        raise FashionClfError("--vote-run needs --data, the folder of photos")
    photos = _splits(config, load_dataset(config.data, FASHION_MNIST_INPUT.using("garment")))[0]
    if len(photos) != count:
        raise FashionClfError(f"--data {config.data}: read {len(photos):,} training photos for the vote, but "
                              f"{count:,} for the run: did the folder change?")  # fmt: skip
    return photos


def _fit(training: Training, state: TrainState, splits: tuple[datasets.Split, datasets.Split | None]) -> None:
    train_split, val_split = splits
    if training.config.epochs == 0 and not state.history:  # the pretrained model as it is: validated and kept
        started = time.perf_counter()
        row = _validated(training, state, {"epoch": 0}, val_split)
        _end_epoch(training, state, {**row, "seconds": time.perf_counter() - started})
    for epoch in range(state.next_epoch, training.config.epochs + 1):
        started = time.perf_counter()
        train_loss, train_acc = train_epoch(training, state, train_split, epoch)
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc}
        row = _validated(training, state, row, val_split)
        row["seconds"] = time.perf_counter() - started
        _end_epoch(training, state, row)


def _validated(training: Training, state: TrainState, row: dict, val_split: datasets.Split | None) -> dict:
    """The epoch's row with the validation loss and accuracy, where there is a validation split."""
    if val_split is not None:
        validate = partial(evaluate_split, state.validated, val_split, training.config.batch_size, training.device)
        row["val_loss"], row["val_accuracy"] = distributed.from_main(validate)
    return row


@contextmanager
def _resume_hint_on_interrupt(run: RunDir):
    try:
        yield
    except KeyboardInterrupt:
        _log(run, f"interrupted; continue with: fashionclf train --resume {run.root}")
        raise


def _splits(config: TrainConfig, data: datasets.Dataset) -> tuple[datasets.Split, datasets.Split | None]:
    """(what to train on, what to validate on): the data's own validation split, or a hold-out of its training split
    (from the given data only, before any mixing); with --final, the training and validation splits together."""
    val_split: datasets.Split | None
    if config.final and data.validation is not None:
        train_split, val_split = datasets.concatenate(data.train, data.validation), None
    elif data.validation is not None and config.validation_size:
        train_split, val_split = data.train, data.validation
    else:
        train_split, val_split = _split(data.train, config)
    if config.mix_fashion_mnist:
        extra = load_dataset(None).train
        chosen = torch.randperm(len(extra), generator=torch.Generator().manual_seed(config.seed))
        chosen = chosen[: config.mix_fashion_mnist]
        train_split = datasets.concatenate(train_split, datasets.Split(extra.images[chosen], extra.labels[chosen]))
    return train_split, val_split


def _split(train_split: datasets.Split, config: TrainConfig) -> tuple[datasets.Split, datasets.Split | None]:
    if not config.validation_size:
        return train_split, None
    if config.validation_size >= len(train_split):
        raise FashionClfError(
            f"--validation-size {config.validation_size} leaves no training images (train set: {len(train_split)})"
        )
    return datasets.hold_out(train_split, size=config.validation_size, seed=config.seed)


def train_epoch(training: Training, state: TrainState, split: datasets.Split, epoch: int) -> tuple[float, float]:
    """One pass over `split` in the order of `epoch`, drawn from a generator seeded with (seed, epoch); returns mean
    loss and accuracy over its images.

    Under torchrun every process draws the same order and augmentation and trains on its slice of each batch."""
    config = training.config
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    label = f"epoch {epoch}/{config.epochs}"
    state.network.train()
    total_loss, correct, seen = 0.0, 0, 0
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    bar = tqdm(
        datasets.batches(split, config.batch_size, shuffle=True, generator=generator),
        total=math.ceil(len(split) / config.batch_size),
        desc=label,
        disable=None if training.progress and distributed.is_main() else True,  # None: a bar only on a terminal
        leave=False,
        unit="batch",
    )
    for step, (images, labels) in enumerate(bar, start=1):
        batch = len(labels)  # the global batch: under torchrun this process trains on its slice of it
        images = _augmented(training, datasets.to_float(images.to(training.device)), labels, generator)
        images = distributed.local_part(images).contiguous(memory_format=memory_format)
        labels = distributed.local_part(labels).to(training.device)
        value, batch_correct = _gradients(training, state, images, labels, batch)
        if not math.isfinite(value):
            _diverged(training, value, f"{label}, batch {step}")
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        if state.ema is not None:
            state.ema.update_parameters(state.model)
        total_loss += value * batch
        correct += batch_correct
        seen += batch
        bar.set_postfix(loss=f"{value:.4f}")
    return total_loss / seen, correct / seen


def _augmented(
    training: Training, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The whole batch augmented, every draw from the epoch's generator after its permutation: a resumed epoch
    augments identically, and so does every process before it takes its slice."""
    config = training.config
    if config.crop_scale or config.rotate or config.jitter:
        images = photo_augment(images, generator, config.crop_scale, config.rotate, config.jitter)
    if config.crop_padding or config.flip or config.erase:
        images = augment(images, generator, config.crop_padding, config.flip, config.erase)
    if config.corrupt:  # 28x28 images: cheap on the CPU, where its many small draws are made
        images = corrupt(images.cpu(), labels, generator, config.corrupt, _footwear(training.spec)).to(images.device)
    return images


def _footwear(spec: ModelSpec) -> torch.Tensor:
    return torch.tensor([i for i, name in enumerate(spec.classes) if name in FOOTWEAR], dtype=torch.long)


def _gradients(
    training: Training, state: TrainState, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> tuple[float, int]:
    """Forward and backward on this process's part of a batch: the batch's mean loss and its correct predictions.
    A compiled network that cannot be built on this machine (no C++ compiler, say) falls back to the eager one,
    once, with a line in the log."""
    try:
        return _forward_backward(training.config, state, images, labels, batch)
    except torch._dynamo.exc.BackendCompilerFailed as exc:
        if state.uncompiled is None:
            raise
        training.log(f"torch.compile cannot build here ({str(exc).strip().splitlines()[0]}); training eagerly")
        state.network, state.uncompiled = state.uncompiled, None
        return _forward_backward(training.config, state, images, labels, batch)


def _forward_backward(
    config: TrainConfig, state: TrainState, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> tuple[float, int]:
    """The gradient of the batch's mean loss, built from parts of at most --micro-batch images: activations are
    kept for one part at a time."""
    state.optimizer.zero_grad(set_to_none=True)
    # DDP's average of the processes' gradients, each part weighted by its share: the whole batch's mean loss.
    weight = distributed.loss_weight(len(labels), batch)
    loss, correct = torch.zeros((), device=images.device), torch.zeros((), dtype=torch.long, device=images.device)
    part = config.micro_batch or len(labels)
    parts = list(zip(images.split(part), labels.split(part), strict=True))
    for index, (part_images, part_labels) in enumerate(parts):
        with distributed.synced_unless(index < len(parts) - 1, state.network):
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=config.bf16):
                logits = state.network(part_images)
            part_loss = F.cross_entropy(logits.float(), part_labels, label_smoothing=config.label_smoothing)
            part_loss = part_loss * weight * (len(part_labels) / len(labels))  # x 1.0 exactly for a whole batch
            part_loss.backward()
        loss, correct = loss + part_loss.detach(), correct + (logits.argmax(1) == part_labels).sum()
    return distributed.batch_totals(loss, correct)


def _diverged(training: Training, value: float, where: str) -> None:
    """Stop the run before a step on a non-finite loss; last.pt stays the last finished epoch's."""
    run = training.run
    kept = (
        f"the last good checkpoint is kept in {run.last_checkpoint}"
        if run.last_checkpoint.exists()
        else "no epoch had finished, so there is no checkpoint"
    )
    message = f"training diverged: loss is {value} at {where}; {kept}"
    training.log(message)
    raise FashionClfError(message)


def evaluate_split(
    model: nn.Module, split: datasets.Split, batch_size: int, device: torch.device
) -> tuple[float, float]:
    logits = predict_logits(model, split.images, batch_size, device)
    loss = F.cross_entropy(logits, split.labels).item()
    accuracy = (logits.argmax(1) == split.labels).float().mean().item()
    return loss, accuracy


def _end_epoch(training: Training, state: TrainState, row: dict) -> None:
    """Record the epoch and write both checkpoints; best.pt first, so last.pt is always the newest."""
    config, run, epoch = training.config, training.run, row["epoch"]
    state.history.append(row)
    state.next_epoch = epoch + 1
    base = {**model_header(config.model, config.model_args, training.spec), "epoch": epoch}
    # Without a validation split nothing can choose an epoch: the last one is kept, as --validation-size 0 says.
    validated = "val_accuracy" in row
    improved = not validated or row["val_accuracy"] > state.best_val_accuracy
    if improved and validated:
        state.best_val_accuracy = row["val_accuracy"]
    if not distributed.is_main():  # the other processes hold the same weights: rank 0 writes the one copy
        return
    if improved:
        save_checkpoint(run.best_checkpoint, {**base, "state_dict": state.evaluated.state_dict(), "metrics": row})
    save_checkpoint(run.last_checkpoint, {**base, **_resume_state(state), "metrics": row})
    _write_history(run, state.history)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds"))
    training.log(f"epoch {epoch}/{config.epochs}: {summary} ({row['seconds']:.1f} s)")


def _resume_state(state: TrainState) -> dict:
    rng: dict[str, object] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "state_dict": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "rng": rng,
        "history": state.history,
        "best_val_accuracy": state.best_val_accuracy,
        "next_epoch": state.next_epoch,
    }


def _restore(state: TrainState, checkpoint: dict) -> None:
    state.model.load_state_dict(checkpoint["state_dict"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if state.scheduler is not None:
        state.scheduler.load_state_dict(checkpoint["scheduler"])
    if state.ema is not None:
        state.ema.load_state_dict(checkpoint["ema"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    state.history = list(checkpoint["history"])
    state.best_val_accuracy = checkpoint["best_val_accuracy"]
    state.next_epoch = checkpoint["next_epoch"]


def _write_history(run: RunDir, history: list[dict]) -> None:
    write_json(run.history_json, history)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text(run.history_csv, buffer.getvalue())


def finetune_summary(
    init: RunDir, config: TrainConfig, run: RunDir, validation: datasets.Split | None, device: torch.device
) -> dict:
    """Accuracy of the fine-tuned model, and of the model it started from where that answers in the same classes,
    on the validation split of the new data and, for a model of Fashion-MNIST's classes, on its test set."""
    before, before_checkpoint = load_model(init.best_checkpoint)
    after, after_checkpoint = load_model(run.best_checkpoint)
    same_classes = recorded_spec(before_checkpoint) == recorded_spec(after_checkpoint)
    summary: dict[str, object] = {"init": config.init, "data": config.data}
    fashion_mnist = recorded_spec(after_checkpoint) == ModelSpec()
    sets = {"held_out": validation, "fashion_mnist_test": _fashion_mnist_test() if fashion_mnist else None}
    for name, split in sets.items():
        if split is None or not len(split):
            continue
        compared = {"before": before, "after": after} if same_classes else {"after": after}
        accuracy = {key: evaluate_split(model.to(device), split, config.batch_size, device)[1]
                    for key, model in compared.items()}  # fmt: skip
        summary[name] = {"images": len(split), "before": None, **accuracy}
        before_text = f"{accuracy['before']:.2%} -> " if same_classes else ""
        _log(run, f"fine-tuning, {name}: accuracy {before_text}{accuracy['after']:.2%}")
    return summary


def _fashion_mnist_test() -> datasets.Split | None:
    try:
        return load_dataset(None, download_missing=False).test
    except FashionClfError:
        return None


def _log(run: RunDir, message: str) -> None:
    if not distributed.is_main():
        return
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    logger.info(line)
    run.root.mkdir(parents=True, exist_ok=True)
    with run.log.open("a", encoding="utf-8") as log:
        log.write(line + "\n")
