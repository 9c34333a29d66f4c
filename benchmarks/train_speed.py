"""Training throughput: the report's recipe written the usual way, against fashionclf's pipeline, in one run.

    .venv/bin/python benchmarks/train_speed.py [--epochs 5] [--limit 55000] [--target 0.903] [--json FILE]

"The usual way" is a torchvision-style dataset that turns each image into a PIL image and then a tensor (what
ToTensor does), behind a DataLoader of batch 100 with shuffling, and an eager Adam loop. fashionclf keeps the
dataset as uint8 tensors in memory and scales whole batches; its 'seed' recipe runs the report's recipe on a cheaper
step (channels-last layout, bf16 autocast), measured also in float32 throughout to show what the pipeline alone
gives; the 'fast' recipe races to the target (that step plus a one-cycle schedule at batch 256), with and without
torch.compile (its compile time counts as training time). Same model and data. Each loop is tested after every
epoch (not timed), which gives its time to reach the report's 90.3% test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fashionclf import data as fmnist
from fashionclf import datasets
from fashionclf.config import TrainConfig
from fashionclf.models import create_model
from fashionclf.networks import predict_logits
from fashionclf.train import TrainState, _new_state, scratch_training, train_epoch


class PerSampleDataset(Dataset):
    def __init__(self, split: datasets.Split):
        self.images, self.labels = split.images.numpy(), split.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index, 0], mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).unsqueeze(0).float().div(255)
        return tensor, int(self.labels[index])


def usual_loop(train: datasets.Split, epochs: int, seed: int) -> Iterator[tuple[float, torch.nn.Module]]:
    """Per epoch: its training seconds and the model."""
    torch.manual_seed(seed)
    model = create_model("fashion_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PerSampleDataset(train), batch_size=100, shuffle=True)
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        yield time.perf_counter() - started, model


def fashionclf_loop(
    train: datasets.Split, epochs: int | None, seed: int, recipe: str, **options
) -> Iterator[tuple[float, torch.nn.Module]]:
    """Per epoch: its training seconds and the model; `epochs` None keeps the recipe's (its schedule's length)."""
    settings = {"seed": seed, "device": "cpu", **options, **({"epochs": epochs} if epochs else {})}
    # Resolved as `fashionclf train` resolves it: bf16 only where the CPU computes it natively.
    data = datasets.Dataset(train, None, Path("."), "benchmark", {})
    with scratch_training(TrainConfig.from_recipe(recipe, **settings), data) as training:
        config = training.config
        state: TrainState = _new_state(training, steps_per_epoch=-(-len(train) // config.batch_size))
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            train_epoch(training, state, train, epoch)
            yield time.perf_counter() - started, state.model


def test_accuracy(model: torch.nn.Module, test: datasets.Split) -> float:
    logits = predict_logits(model.float(), test.images, 1000, torch.device("cpu"))
    return (logits.argmax(1) == test.labels).float().mean().item()


def race(name: str, epochs: Iterator[tuple[float, torch.nn.Module]], images: int, test: datasets.Split, target: float):
    """Train epoch by epoch (only training is timed), testing after each; the time the target is first reached."""
    row = {"loop": name, "seconds": 0.0, "accuracy": [], "time_to_target": None}
    for seconds, model in epochs:
        row["seconds"] += seconds
        row["accuracy"].append(test_accuracy(model, test))
        if row["time_to_target"] is None and row["accuracy"][-1] >= target:
            row["time_to_target"] = row["seconds"]
        print(f"  {name}: epoch {len(row['accuracy'])} {row['accuracy'][-1]:.2%} at {row['seconds']:.0f} s", flush=True)
    row["images_per_s"] = images * len(row["accuracy"]) / row["seconds"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the usual loop and of 'seed'")
    parser.add_argument("--limit", type=int, default=55_000, help="training images (55,000: the split train uses)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.903, help="test accuracy to race to (the report's)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    data = fmnist.load_fashion_mnist()
    train = datasets.hold_out(data.train, 5000, args.seed)[0]
    train = datasets.Split(train.images[: args.limit], train.labels[: args.limit])
    print(f"FashionCNN, {len(train):,} training images, {torch.get_num_threads()} threads, torch {torch.__version__}")
    rows = [
        race("per-sample Dataset + DataLoader (the usual way)", usual_loop(train, args.epochs, args.seed),
             len(train), data.test, args.target),
        race("fashionclf, recipe 'seed'", fashionclf_loop(train, args.epochs, args.seed, "seed"),
             len(train), data.test, args.target),
        race("fashionclf, recipe 'seed' in float32 (NCHW)",
             fashionclf_loop(train, args.epochs, args.seed, "seed", channels_last=False, bf16=False),
             len(train), data.test, args.target),
        race("fashionclf, recipe 'fast'", fashionclf_loop(train, None, args.seed, "fast"),
             len(train), data.test, args.target),
        race("fashionclf, recipe 'fast' + torch.compile", fashionclf_loop(train, None, args.seed, "fast", compile=True),
             len(train), data.test, args.target),
    ]  # fmt: skip
    usual = rows[0]
    print(
        f"{'loop':<50} {'images/s':>9} {'vs usual':>9} {'final acc':>9} {f'to {args.target:.1%}':>10} {'vs usual':>9}"
    )
    for row in rows:
        reached = row["time_to_target"]
        ratio = f"{reached / usual['time_to_target']:.2f}x" if reached and usual["time_to_target"] else "-"
        print(f"{row['loop']:<50} {row['images_per_s']:>9,.0f} {row['images_per_s'] / usual['images_per_s']:>8.2f}x "
              f"{row['accuracy'][-1]:>9.2%} {f'{reached:.0f} s' if reached else 'never':>10} {ratio:>9}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
