"""Small, learnable stand-ins for Fashion-MNIST: class k is a bright horizontal band at a k-dependent height."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionclf.config import TrainConfig
from fashionclf.datasets import Dataset, Split
from fashionclf.models import ModelSpec, model_entry
from fashionclf.preprocess import FASHION_MNIST_CLASSES
from fashionclf.rundir import RunDir
from fashionclf.train import train


def synthetic_split(n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for k in range(10):
        rows = slice(2 + 2 * k, 4 + 2 * k)
        images[labels == k, :, rows, 4:24] = 230
    return Split(images=images, labels=labels.long())


def synthetic_data(train: int = 600, test: int = 200) -> Dataset:
    return Dataset(
        train=synthetic_split(train, seed=1),
        test=synthetic_split(test, seed=2),
        directory=Path("/synthetic"),
        origin="--data-dir",
        checksums={},
    )


CSV_HEADER = "label," + ",".join(f"pixel{i}" for i in range(1, 785))


def write_csv(path: Path, split: Split) -> None:
    """A Kaggle-format CSV (a header, then label,pixel1,...,pixel784 per image), which --data reads."""
    rows = np.concatenate([split.labels.numpy()[:, None], split.images.numpy().reshape(len(split), -1)], axis=1)
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=CSV_HEADER, comments="")


def band_photos(root, names=("hat", "shoes", "skirt"), per_class=40) -> None:
    """Folders of pictures with their own class names: class k is a bright band at a k-dependent height."""
    for split, count in (("train", per_class), ("validation", per_class // 4)):
        images = synthetic_data(train=10, test=count * 10).test
        for k, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in np.flatnonzero(images.labels.numpy() == k):
                Image.fromarray(images.images[i, 0].numpy()).save(folder / f"{i}.png")


def csv_run(root: Path) -> tuple[RunDir, Path]:
    """A one-epoch run trained as `train --data root/data.csv` trains it: (the run, the CSV file it records)."""
    csv = root / "data.csv"
    write_csv(csv, synthetic_split(200, seed=1))
    config = TrainConfig(epochs=1, batch_size=50, validation_size=0, device="cpu", data=str(csv))
    return train(config, root / "run", progress=False), csv


def quick_spec(name: str, classes: tuple[str, ...] = FASHION_MNIST_CLASSES) -> ModelSpec:
    """A registered model's spec at a size quick to run: the pretrained photo models at 96 px instead of 384 (every
    layer kind is still there; only the feature maps shrink)."""
    entry = model_entry(name)
    return entry.spec(classes, size=96 if entry.pretrained else None)
