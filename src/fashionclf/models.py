"""Models, registered by name: adding one is a decorated function, and nothing else imports model classes.

What a model expects and answers travels with it as a ModelSpec: its class names and its input format (the
preprocessing, channels and size). `train` writes it into config.json and every checkpoint, `quantize` into every
exported file, and every stage builds its example inputs and names its classes from it, so a stage never asks which
dataset a model came from. A builder takes the class count and the input's channels and size; every entry states
the input format it is made for.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from fashionclf.datasets import FASHION_MNIST_CLASSES, to_float
from fashionclf.errors import FashionClfError
from fashionclf.layers import Mirrored, Scale, ViewMean, ViewsToPhotos
from fashionclf.preprocess import FASHION_MNIST_INPUT, FASHION_MNIST_SIDE, InputFormat
from fashionclf.pretrained import PhotoTransfer
from fashionclf.runtime import INPUT_BUDGET, LARGE_BATCH


@dataclass(frozen=True)
class ModelSpec:
    """A model's class names, in the order of its outputs, and the input it takes."""

    classes: tuple[str, ...] = FASHION_MNIST_CLASSES
    input: InputFormat = FASHION_MNIST_INPUT

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.input.channels, self.input.size, self.input.size)

    def as_dict(self) -> dict:
        return {"classes": list(self.classes), **vars(self.input)}

    def using(self, preprocessing: str | None) -> ModelSpec:
        """The spec with pictures brought to the same input by another preprocessing (None: its own)."""
        return replace(self, input=self.input.using(preprocessing))

    @classmethod
    def from_dict(cls, values: dict | None) -> ModelSpec:
        """A recorded spec; None (a run or file of an earlier version) is Fashion-MNIST's."""
        if values is None:
            return cls()
        known = {"preprocessing", "channels", "size"}
        return cls(tuple(values["classes"]), InputFormat(**{k: v for k, v in values.items() if k in known}))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    input: InputFormat
    description: str
    pretrained: bool = False  # its builds have load_imagenet_weights(), which train calls before training

    def spec(self, classes: tuple[str, ...] = FASHION_MNIST_CLASSES, size: int | None = None) -> ModelSpec:
        """The entry's spec for a class set, at another input size where the model takes one."""
        if size is None or size == self.input.size:
            return ModelSpec(tuple(classes), self.input)
        return ModelSpec(tuple(classes), replace(self.input, size=size))


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, input: InputFormat = FASHION_MNIST_INPUT, pretrained: bool = False):
    """Register a builder under `name`; its docstring's first line becomes the description."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        description = (build.__doc__ or name).strip().splitlines()[0]
        _REGISTRY[name] = ModelEntry(name, build, input, description, pretrained)
        return build

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FashionClfError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, spec: ModelSpec | None = None, **model_args) -> nn.Module:
    """Build a registered model for a spec (the entry's own by default); arguments it does not take, or values it
    cannot be built with, are refused with the model's name (they come from files: a config or a checkpoint)."""
    entry = model_entry(name)
    spec = spec or entry.spec()
    if spec.input.domain != entry.input.domain:
        raise FashionClfError(f"model {name!r} takes {entry.input.domain} input, not {spec.input.domain}")
    shape = {"num_classes": len(spec.classes), "channels": spec.input.channels, "size": spec.input.size}
    try:
        inspect.signature(entry.build).bind(**shape, **model_args)
        return entry.build(**shape, **model_args)
    except (TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FashionClfError(f"model {name!r} cannot be built with arguments {model_args} ({reason})") from None


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


@register_model("fashion_cnn")
def fashion_cnn(num_classes: int, channels: int, size: int, dropout: float = 0.25) -> nn.Module:
    """FashionCNN from the seed report: two conv blocks (BatchNorm, ReLU, max-pool) and three linear layers."""
    return FashionCNN(num_classes, channels, size, dropout)


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


@register_model("fashion_cnn_relu")
def fashion_cnn_relu(num_classes: int, channels: int, size: int, dropout: float = 0.25) -> nn.Module:
    """FashionCNN with ReLU between its linear layers: the same parameters, a non-linear head."""
    return FashionCNNReLU(num_classes, channels, size, dropout)


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


@register_model("resnet9")
def resnet9(num_classes: int, channels: int, size: int, width: int = 32) -> nn.Module:
    """ResNet-9 (DAWNBench style): four conv stages, two residual blocks, for the best accuracy."""
    return ResNet9(num_classes, channels, size, width)


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


@register_model("photo_resnet9", input=InputFormat("photo", 3, 64))
def photo_resnet9(num_classes: int, channels: int, size: int, width: int = 64, flip_average: bool = False) -> nn.Module:
    """ResNet-9 for RGB photos (64 to 128 px): a stride-2 stem, three stages, two residual blocks.

    With `flip_average`, its predictions average the photo's and its mirror image's."""
    if size % 16:
        raise ValueError(f"input size {size} is not a multiple of 16")
    return PhotoResNet9(num_classes, channels, size, width, flip_average)


def _photo_transfer(variant: str, num_classes: int, channels: int, size: int, head: str, hidden: int, dropout: float):
    if channels != 3 or head not in HEADS:
        raise ValueError(f"takes RGB input and a head of {', '.join(HEADS)}")
    return PhotoTransfer(variant, num_classes, size, head, hidden, dropout)


HEADS = ("mlp", "imagenet")


@register_model("efficientnet_lite0", input=InputFormat("photo", 3, 384), pretrained=True)
def efficientnet_lite0(
    num_classes: int, channels: int, size: int, head: str = "mlp", hidden: int = 512, dropout: float = 0.5
) -> nn.Module:
    """EfficientNet-Lite0 pretrained on ImageNet, four views of each photo, a head for the classes (mlp, trained on
    its frozen features; or imagenet: zero-shot, through a class map)."""
    return _photo_transfer("lite0", num_classes, channels, size, head, hidden, dropout)


@register_model("efficientnet_lite2", input=InputFormat("photo", 3, 384), pretrained=True)
def efficientnet_lite2(
    num_classes: int, channels: int, size: int, head: str = "mlp", hidden: int = 512, dropout: float = 0.5
) -> nn.Module:
    """EfficientNet-Lite2 pretrained on ImageNet (77.6% there against Lite0's 75.1%), as efficientnet_lite0."""
    return _photo_transfer("lite2", num_classes, channels, size, head, hidden, dropout)


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
