"""Models, registered by name: adding one is a decorated function, and nothing else imports model classes.

Every entry states the input it expects, so analysis, export and inference can build an example input
without knowing the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fashionclf.data import to_float
from fashionclf.errors import FashionClfError

INPUT_SIZE = (1, 28, 28)
NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    input_size: tuple[int, int, int]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, input_size: tuple[int, int, int] = INPUT_SIZE):
    """Register a builder under `name`; its docstring's first line becomes the description."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        description = (build.__doc__ or name).strip().splitlines()[0]
        _REGISTRY[name] = ModelEntry(name, build, input_size, description)
        return build

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FashionClfError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, **model_args) -> nn.Module:
    """Build a registered model; arguments it does not take, or values it cannot be built with, are refused with
    the model's name (they come from files: a config or a checkpoint)."""
    build = model_entry(name).build
    try:
        inspect.signature(build).bind(**model_args)
        return build(**model_args)
    except (TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FashionClfError(f"model {name!r} cannot be built with arguments {model_args} ({reason})") from None


def example_input(name: str, batch_size: int = 1) -> torch.Tensor:
    return torch.rand(batch_size, *model_entry(name).input_size)


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

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.25):
        super().__init__()
        self.layer1 = conv_block(1, 32, padding=1)  # 28x28 -> 14x14
        self.layer2 = conv_block(32, 64, padding=0)  # 14x14 -> 12x12 -> 6x6
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 6 * 6, 600)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(600, 120)
        self.fc3 = nn.Linear(120, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.layer2(self.layer1(x)))
        return self.fc3(self.fc2(self.drop(self.fc1(x))))


@register_model("fashion_cnn")
def fashion_cnn(num_classes: int = NUM_CLASSES, dropout: float = 0.25) -> nn.Module:
    """FashionCNN from the seed report: two conv blocks (BatchNorm, ReLU, max-pool) and three linear layers."""
    return FashionCNN(num_classes=num_classes, dropout=dropout)


class FashionCNNReLU(FashionCNN):
    """FashionCNN with ReLU after its first two linear layers: the same parameters, a non-linear head.

    Without an activation the report's three linear layers compose into one linear map, so the network is, in
    effect, a linear classifier on the conv features; measured, that caps its accuracy (see the README).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.25):
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.layer2(self.layer1(x)))
        return self.fc3(self.relu2(self.fc2(self.drop(self.relu1(self.fc1(x))))))


@register_model("fashion_cnn_relu")
def fashion_cnn_relu(num_classes: int = NUM_CLASSES, dropout: float = 0.25) -> nn.Module:
    """FashionCNN with ReLU between its linear layers: the same parameters, a non-linear head."""
    return FashionCNNReLU(num_classes=num_classes, dropout=dropout)


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

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 32):
        super().__init__()
        self.prep = conv_block(1, width, bias=False, pool=False)
        self.layer1 = nn.Sequential(conv_block(width, 2 * width, bias=False), Residual(2 * width))
        self.layer2 = conv_block(2 * width, 4 * width, bias=False)
        self.layer3 = nn.Sequential(conv_block(4 * width, 8 * width, bias=False), Residual(8 * width))
        self.pool = nn.MaxPool2d(3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(self.flatten(self.pool(x)))


@register_model("resnet9")
def resnet9(num_classes: int = NUM_CLASSES, width: int = 32) -> nn.Module:
    """ResNet-9 (DAWNBench style): four conv stages, two residual blocks, for the best accuracy."""
    return ResNet9(num_classes=num_classes, width=width)


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


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits of `model` in eval mode for uint8 images (N, 28, 28), in order, on the CPU."""
    was_training = model.training
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_float(images[start : start + batch_size]).to(device)
            outputs.append(model(batch).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, NUM_CLASSES)
