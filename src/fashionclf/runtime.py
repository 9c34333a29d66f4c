"""The machine a run uses and records: its device, whether it computes bfloat16 natively, and the versions and
hardware that a number in a report can be traced to."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import torch

from fashionclf import distributed
from fashionclf.errors import FashionClfError

LARGE_BATCH = 256  # the batch that throughput is measured at (analysis, bench) and that compiled packages take


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs natively: CUDA, or a CPU with AVX-512 BF16 / AMX through oneDNN."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FashionClfError(f"--device: unknown device {name!r} (use auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FashionClfError("--device cuda: no CUDA device is available on this machine")
    return device


def environment(device: torch.device) -> dict:
    """Versions and hardware, so a number in a report can be traced to what produced it."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "torch": torch.__version__}
    for package in ("numpy", "scikit-learn", "matplotlib", "fashionclf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "world_size": distributed.world_size(),
        "backend": distributed.backend(),
    }
