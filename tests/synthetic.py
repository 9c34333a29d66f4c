"""Small, learnable stand-ins for Fashion-MNIST: class k is a bright horizontal band at a k-dependent height."""

from __future__ import annotations

from pathlib import Path

import torch

from fashionclf.data import FashionMNIST, Split


def synthetic_split(n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for k in range(10):
        rows = slice(2 + 2 * k, 4 + 2 * k)
        images[labels == k, rows, 4:24] = 230
    return Split(images=images, labels=labels.long())


def synthetic_data(train: int = 600, test: int = 200) -> FashionMNIST:
    return FashionMNIST(
        train=synthetic_split(train, seed=1),
        test=synthetic_split(test, seed=2),
        directory=Path("/synthetic"),
        origin="--data-dir",
        checksums={},
    )
