"""Training throughput: the report's recipe written the usual way, against fashionclf's pipeline, in one run.

    .venv/bin/python benchmarks/train_speed.py [--epochs 1] [--limit 55000]

"The usual way" is a torchvision-style dataset that turns each image into a PIL image and then a tensor (what
ToTensor does), behind a DataLoader of batch 100 with shuffling, and an eager Adam loop. fashionclf keeps the
dataset as uint8 tensors in memory and scales whole batches ('seed' recipe), and can also run the step in
channels-last layout with bf16 autocast ('fast' recipe). Same model, optimizer, batch size and data; test accuracy
after the last epoch is printed beside the speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fashionclf import data as fmnist
from fashionclf.models import create_model, predict_logits
from fashionclf.rundir import RunDir
from fashionclf.train import TrainConfig, TrainState, _new_state, train_epoch


class PerSampleDataset(Dataset):
    def __init__(self, split: fmnist.Split):
        self.images, self.labels = split.images.numpy(), split.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index], mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).unsqueeze(0).float().div(255)
        return tensor, int(self.labels[index])


def usual_loop(train: fmnist.Split, epochs: int, seed: int) -> tuple[float, torch.nn.Module]:
    torch.manual_seed(seed)
    model = create_model("fashion_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PerSampleDataset(train), batch_size=100, shuffle=True)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started, model


def fashionclf_loop(train: fmnist.Split, epochs: int, seed: int, recipe: str) -> tuple[float, torch.nn.Module]:
    config = TrainConfig.from_recipe(recipe, seed=seed, device="cpu")
    state: TrainState = _new_state(config, torch.device("cpu"), steps_per_epoch=-(-len(train) // config.batch_size))
    with tempfile.TemporaryDirectory() as scratch:
        run = RunDir(Path(scratch))
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            train_epoch(state, train, config, generator, torch.device("cpu"), run, f"epoch {epoch}", False)
        return time.perf_counter() - started, state.model


def test_accuracy(model: torch.nn.Module, test: fmnist.Split) -> float:
    logits = predict_logits(model.float(), test.images, 1000, torch.device("cpu"))
    return (logits.argmax(1) == test.labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=55_000, help="training images (55,000: the split train uses)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = fmnist.load_fashion_mnist()
    train = fmnist.split_validation(data.train, 5000, args.seed)[0]
    train = fmnist.Split(train.images[: args.limit], train.labels[: args.limit])
    images = len(train) * args.epochs
    print(f"FashionCNN, Adam 1e-3, batch 100, {len(train):,} images x {args.epochs} epoch(s), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    rows = [("per-sample Dataset + DataLoader (the usual way)", *usual_loop(train, args.epochs, args.seed))]
    for recipe in ("seed", "fast"):
        rows.append((f"fashionclf, recipe {recipe!r}", *fashionclf_loop(train, args.epochs, args.seed, recipe)))
    baseline = images / rows[0][1]
    print(f"{'loop':<50} {'images/s':>9} {'vs usual':>9} {'test acc':>9}")
    for name, seconds, model in rows:
        print(f"{name:<50} {images / seconds:>9,.0f} {images / seconds / baseline:>8.2f}x "
              f"{test_accuracy(model, data.test):>9.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
