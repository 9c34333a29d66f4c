"""The machine a run uses and records: its device, what its CPU computes natively (bfloat16, int8 dot products),
and the versions and hardware that a number in a report can be traced to."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from fashionclf import distributed
from fashionclf.errors import FashionClfError

LARGE_BATCH = 256  # the batch that throughput is measured at (analysis, bench) and that compiled packages take
INPUT_BUDGET = 2**23  # input values in one batch (32 MB of float32): fewer than LARGE_BATCH images where they are big


# What oneDNN may use under each ONEDNN_MAX_CPU_ISA cap: (int8 dot products, bfloat16, AMX). Caps not listed
# (ALL, DEFAULT, newer ones) leave the hardware as it is.
_ONEDNN_CAPS = {
    "SSE41": (False, False, False),
    "AVX": (False, False, False),
    "AVX2": (False, False, False),
    "AVX512_CORE": (False, False, False),
    "AVX2_VNNI": (True, False, False),
    "AVX2_VNNI_2": (True, False, False),
    "AVX512_CORE_VNNI": (True, False, False),
    "AVX512_CORE_BF16": (True, True, False),
    "AVX512_CORE_FP16": (True, True, False),
    "AVX10_1_512": (True, True, False),
}
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@dataclass(frozen=True)
class Cpu:
    """What the CPU in use computes natively, as PyTorch and oneDNN are allowed to use it: `capability` is ATen's
    kernel level (ATEN_CPU_CAPABILITY lowers it), `vnni` whether it has int8 dot-product instructions (AVX512-VNNI,
    AVX-VNNI or AMX), `bf16` native bfloat16, and `limited_by` the ONEDNN_MAX_CPU_ISA cap in force, if any.

    Without VNNI, int8 convolutions and matrix products run no faster than float32 (the u8 x s8 products go through
    16-bit intermediates), and ONNX Runtime's kernels saturate on them unless activations keep to 7 bits."""

    model: str
    capability: str
    vnni: bool
    bf16: bool
    amx: bool
    limited_by: str | None = None

    @property
    def description(self) -> str:
        has = [name for name, present in (("VNNI", self.vnni), ("bf16", self.bf16), ("AMX", self.amx)) if present]
        lacks = [f"no {name}" for name in ("VNNI", "bf16") if not getattr(self, name.lower())]
        text = ", ".join([self.capability, *has, *lacks])
        return f"{text} (as ONEDNN_MAX_CPU_ISA={self.limited_by} allows)" if self.limited_by else text

    @property
    def int8_support(self) -> str:
        """What decides whether int8 outruns fp32 here, in words: 'has VNNI (AVX512, AMX)', 'has no VNNI (AVX2)'."""
        extras = ", ".join([self.capability, *(["AMX"] if self.amx else [])])
        limit = f", as ONEDNN_MAX_CPU_ISA={self.limited_by} allows" if self.limited_by else ""
        return f"has {'' if self.vnni else 'no '}VNNI ({extras}{limit})"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Cpu:
        return cls(**values)


@cache
def cpu() -> Cpu:
    """The CPU in use, read once per process: its flags (Linux's /proc/cpuinfo, else PyTorch's cpuinfo) under the
    cap that ONEDNN_MAX_CPU_ISA sets."""
    model, flags = _cpu_model_and_flags()
    vnni, bf16, amx = bool(flags & _VNNI_FLAGS), bool(flags & _BF16_FLAGS), "amx_tile" in flags
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ONEDNN_CAPS:
        allowed = _ONEDNN_CAPS[cap]
        vnni, bf16, amx = vnni and allowed[0], bf16 and allowed[1], amx and allowed[2]
    limited_by = cap if cap in _ONEDNN_CAPS else None
    return Cpu(model, torch.backends.cpu.get_cpu_capability(), vnni, bf16, amx, limited_by)


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    """The first processor's model name and flags in /proc/cpuinfo (Linux); elsewhere what PyTorch's cpuinfo tells."""
    try:
        first = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
    except OSError:
        first = ""
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}
    if "flags" in fields:
        return fields.get("model name", platform.machine()), set(fields["flags"].split())
    amx = torch.cpu._is_amx_tile_supported()
    known = {"avx512_vnni": torch.cpu._is_vnni_supported(), "amx_tile": amx, "amx_int8": amx,
             "avx512_bf16": torch.cpu._is_avx512_bf16_supported()}  # fmt: skip
    return platform.processor() or platform.machine(), {flag for flag, present in known.items() if present}


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs natively: CUDA, or a CPU with AVX-512 BF16 / AMX through oneDNN (emulated
    bfloat16 is slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu().bf16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


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
        "cpu": cpu().as_dict(),
        "world_size": distributed.world_size(),
        "backend": distributed.backend(),
    }
