"""`fashionclf` with one more model, tiny_conv: no BatchNorm and no dropout, so that a run split over processes can
be compared with one process weight for weight. The multi-process tests start this file, with and without torchrun;
the model is registered in those processes only, so the test session's registry stays as it is."""

from torch import nn

from fashionclf.cli import main
from fashionclf.models import register_model


@register_model("tiny_conv")
def tiny_conv() -> nn.Module:
    """One strided convolution and a linear layer: no BatchNorm, no dropout."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 13 * 13, 10))


if __name__ == "__main__":
    main()
