"""The networks the registered models build (models.py), and what every stage does with a network: example inputs,
batches bounded in memory, parameter counts, a layer table, logits in batches.

Torch is imported here and not in models.py, so that a model's name, input and kind can be checked without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fashionclf.datasets import to_float
from fashionclf.layers import Mirrored, Scale, ViewMean, ViewsToPhotos
from fashionclf.models import ModelSpec
from fashionclf.preprocess import FASHION_MNIST_SIDE
from fashionclf.runtime import INPUT_BUDGET, LARGE_BATCH


def images_per_batch(image_shape: tuple[int, ...], wanted: int, budget: int = INPUT_BUDGET) -> int:
    """`wanted` images a batch, fewer where an image is large, so that a batch's memory stays bounded whatever the
    input (at most `budget` input values)."""
    return max(1, min(wanted, budget // max(1, math.prod(image_shape))))


def large_batch(spec: ModelSpec) -> int:
    """The batch that throughput is measured at and that compiled packages take: LARGE_BATCH images, fewer where
    an image is large (a 384-px photo: 18)."""
    return images_per_batch(spec.input_size, LARGE_BATCH)


def example_input(spec: ModelSpec, batch_size: int = 1) -> torch.Tensor:
    return torch.rand(batch_size, *spec.input_size)


def conv_block(
    in_channels: int, out_channels: int, padding: int = 1, *, bias: bool = True, pool: bool = True
) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU and (with `pool`) 2x2 max-pooling."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=padding, bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2)) if pool else nn.Sequential(*layers)


class FashionCNN(nn.Module):
    """The seed report's network, layer for layer (1,475,338 parameters).

    The head has no activation between its linear layers: the report's network has none, and we reproduce it.
    """

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = FASHION_MNIST_SIDE, dropout: float = 0.25):
        super().__init__()
        self.layer1 = conv_block(channels, 32, padding=1)  # 28x28 -> 14x14
        self.layer2 = conv_block(32, 64, padding=0)  # 14x14 -> 12x12 -> 6x6
        self.flatten = nn.Flatten()
        side = (size // 2 - 2) // 2
        self.fc1 = nn.Linear(64 * side * side, 600)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(600, 120)
        self.fc3 = nn.Linear(120, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.layer2(self.layer1(x)))
        return self.fc3(self.fc2(self.drop(self.fc1(x))))


class FashionCNNReLU(FashionCNN):
    """FashionCNN with ReLU after its first two linear layers: the same parameters, a non-linear head.

    Without an activation the report's three linear layers compose into one linear map, so the network is, in
    effect, a linear classifier on the conv features; measured, that caps its accuracy (see the README).
    """

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = FASHION_MNIST_SIDE, dropout: float = 0.25):
        super().__init__(num_classes, channels, size, dropout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.layer2(self.layer1(x)))
        return self.fc3(self.relu2(self.fc2(self.drop(self.relu1(self.fc1(x))))))


class Residual(nn.Module):
    """Two 3x3 conv-BatchNorm-ReLU layers whose output is added to their input."""

    def __init__(self, channels: int):
        super().__init__()
        self.block1 = conv_block(channels, channels, bias=False, pool=False)
        self.block2 = conv_block(channels, channels, bias=False, pool=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(self.block1(x))


class ResNet9(nn.Module):
    """The residual network of Page's DAWNBench CIFAR-10 entry (ResNet-9), sized for 28x28 grayscale images.

    Three stages double the channels and halve the map with max-pooling (28 -> 14 -> 7 -> 3); the first and last
    carry a residual block. No global average pooling module is needed: the last map is pooled by a fixed window.
    """

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = FASHION_MNIST_SIDE, width: int = 32):
        super().__init__()
        self.prep = conv_block(channels, width, bias=False, pool=False)
        self.layer1 = nn.Sequential(conv_block(width, 2 * width, bias=False), Residual(2 * width))
        self.layer2 = conv_block(2 * width, 4 * width, bias=False)
        self.layer3 = nn.Sequential(conv_block(4 * width, 8 * width, bias=False), Residual(8 * width))
        self.pool = nn.MaxPool2d(size // 8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(self.flatten(self.pool(x)))


class PhotoResNet9(nn.Module):
    """ResNet-9 for RGB photos: a stride-2 stem halves the photo first, then Page's three stages (channels doubled,
    map halved by max-pooling, a residual block in the first and last); the last map is max-pooled whole, and the
    logits of a bias-free head are scaled by 1/8 as in Page's network."""

    def __init__(
        self, num_classes: int = 10, channels: int = 3, size: int = 64, width: int = 64, flip_average: bool = False
    ):
        super().__init__()
        self.flip_average = flip_average
        self.prep = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = nn.Sequential(conv_block(width, 2 * width, bias=False), Residual(2 * width))
        self.layer2 = conv_block(2 * width, 4 * width, bias=False)
        self.layer3 = nn.Sequential(conv_block(4 * width, 8 * width, bias=False), Residual(8 * width))
        self.pool = nn.MaxPool2d(size // 16)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * width, num_classes, bias=False)
        self.scale = Scale(0.125)
        self.mirrored, self.to_photos, self.view_mean = Mirrored(), ViewsToPhotos(Mirrored.count), ViewMean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_average and not self.training:
            # Test-time flip averaging, inside the network so that every exported and quantized file does it too;
            # one call on both halves, as the int8 quantizer needs each layer called once.
            return self.view_mean(self.to_photos(self.logits(self.mirrored(x))))
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.scale(self.fc(self.flatten(self.pool(x))))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_table(model: nn.Module, input_size: tuple[int, ...]) -> list[dict]:
    """Name, type, output shape and parameter count of every leaf module, from one forward pass."""
    rows: list[dict] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:
            hooks.append(module.register_forward_hook(_record_output(rows, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return rows


def _record_output(rows: list[dict], name: str):
    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "output_shape": list(output.shape[1:]),
                "params": sum(p.numel() for p in module.parameters()),
            }
        )

    return hook


def predict_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Float32 logits (N, classes) for uint8 images (N, C, H, W) (or cached features, as they are), in order, on
    the CPU, in batches of at most `batch_size` images and INPUT_BUDGET values: of a network (in eval mode, on
    `device`), or of any function of float32 images such as a backend's runner."""
    batch_size = images_per_batch(tuple(images.shape[1:]), batch_size)
    network = model if isinstance(model, nn.Module) else None
    was_training = network is not None and network.training
    if network is not None:
        network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_float(images[start : start + batch_size]).to(device)
            outputs.append(model(batch).float().cpu())
    if network is not None:
        network.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)
