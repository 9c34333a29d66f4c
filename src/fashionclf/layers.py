"""Layers of the project's own that models share, each a module so that the analysis (torch.fx) sees it as one
layer with a known receptive field and cost, and the int8 quantizer sees every layer called once.

Views of a picture travel along the batch axis, view by view: `Mirrored` makes them, the network runs once on all of
them, `ViewsToPhotos` regroups its output by picture and `ViewMean` averages a picture's views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Scale(nn.Module):
    """Multiplies by a constant: a logit scale that keeps a head's effective learning rate low (Page's ResNet-9)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Mirrored(nn.Module):
    """(N, C, H, W) -> (2N, C, H, W): the pictures, then their mirror images."""

    count = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.flip(-1)])


class ViewsToPhotos(nn.Module):
    """(views x N, ...) laid out view by view -> (N, views, ...)."""

    def __init__(self, views: int):
        super().__init__()
        self.views = views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(0, (self.views, -1)).transpose(0, 1)


class ViewMean(nn.Module):
    """(N, views, classes) -> (N, classes): a picture's logits averaged over its views."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a strided window: the total a window needs, half before and the rest after
    (one pixel more after where it does not split evenly)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def amounts(self, size: int) -> tuple[int, int]:
        """Pixels padded before and after along an axis of `size`."""
        total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (*self.amounts(x.shape[-1]), *self.amounts(x.shape[-2])))


class AvgMaxPool(nn.Module):
    """(N, C, h, w) -> (N, 2C): each map's mean and maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


class Standardise(nn.Module):
    """(x - shift) * scale, with shift and scale measured on training features before a head is trained."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) * self.scale


class Vote(nn.Module):
    """Class scores from another classifier's logits: the log of the summed probability of the classes `votes`
    (theirs x ours, 0 or 1) gives each of ours."""

    votes: torch.Tensor

    def __init__(self, theirs: int, ours: int):
        super().__init__()
        self.register_buffer("votes", torch.zeros(theirs, ours))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.softmax(-1) @ self.votes).clamp_min(1e-6).log()
