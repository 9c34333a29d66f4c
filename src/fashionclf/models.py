"""Models, registered by name: adding one is a decorated function, and every stage builds a model by its name.

What a model expects and answers travels with it as a ModelSpec: its class names and its input format (the
preprocessing, channels and size). `train` writes it into config.json and every checkpoint, `quantize` into every
exported file, and every stage builds its example inputs and names its classes from it, so a stage never asks which
dataset a model came from. A builder takes the class count and the input's channels and size; every entry states
the input format it is made for.

Nothing here imports torch: the command line checks a model's name, input and kind on every start, and refuses a
bad option in well under a second. A builder imports its network (networks.py, pretrained.py) when it is called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fashionclf.errors import FashionClfError
from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_INPUT, InputFormat

if TYPE_CHECKING:
    from torch import nn


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


@register_model("fashion_cnn")
def fashion_cnn(num_classes: int, channels: int, size: int, dropout: float = 0.25) -> nn.Module:
    """FashionCNN from the seed report: two conv blocks (BatchNorm, ReLU, max-pool) and three linear layers."""
    from fashionclf import networks

    return networks.FashionCNN(num_classes, channels, size, dropout)


@register_model("fashion_cnn_relu")
def fashion_cnn_relu(num_classes: int, channels: int, size: int, dropout: float = 0.25) -> nn.Module:
    """FashionCNN with ReLU between its linear layers: the same parameters, a non-linear head."""
    from fashionclf import networks

    return networks.FashionCNNReLU(num_classes, channels, size, dropout)


@register_model("resnet9")
def resnet9(num_classes: int, channels: int, size: int, width: int = 32) -> nn.Module:
    """ResNet-9 (DAWNBench style): four conv stages, two residual blocks, for the best accuracy."""
    from fashionclf import networks

    return networks.ResNet9(num_classes, channels, size, width)


@register_model("photo_resnet9", input=InputFormat("photo", 3, 64))
def photo_resnet9(num_classes: int, channels: int, size: int, width: int = 64, flip_average: bool = False) -> nn.Module:
    """ResNet-9 for RGB photos (64 to 128 px): a stride-2 stem, three stages, two residual blocks.

    With `flip_average`, its predictions average the photo's and its mirror image's."""
    if size % 16:
        raise ValueError(f"input size {size} is not a multiple of 16")
    from fashionclf import networks

    return networks.PhotoResNet9(num_classes, channels, size, width, flip_average)


def _photo_transfer(variant: str, num_classes: int, channels: int, size: int, head: str, hidden: int, dropout: float):
    if channels != 3 or head not in HEADS:
        raise ValueError(f"takes RGB input and a head of {', '.join(HEADS)}")
    from fashionclf.pretrained import PhotoTransfer

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
