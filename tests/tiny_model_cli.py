"""`fashionclf` with one more model, tiny_conv: no BatchNorm and no dropout, so that a run split over processes can
be compared with one process weight for weight. The multi-process tests start this file, with and without torchrun;
the model is registered in those processes only, so the test session's registry stays as it is."""

from torch import nn

from fashionclf.cli import main
from fashionclf.models import register_model


@register_model("tiny_conv")
def tiny_conv(num_classes: int, channels: int, size: int) -> nn.Module:
    """One strided convolution and a linear layer: no BatchNorm, no dropout."""
    side = (size - 3) // 2 + 1
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * side**2, num_classes)
    )


if __name__ == "__main__":
    main()
