"""What the CPU computes natively, as the decisions that depend on it (bf16 autocast, int8 settings) read it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fashionclf.runtime import Cpu, bf16_supported, cpu, environment

CPUINFO = Path("/proc/cpuinfo")


def _flags() -> set[str]:
    line = next(line for line in CPUINFO.read_text().splitlines() if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(not CPUINFO.is_file(), reason="reads Linux's /proc/cpuinfo")
def test_the_cpu_at_hand_is_read_from_its_flags(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    cpu.cache_clear()
    try:
        here, flags = cpu(), _flags()
    finally:
        cpu.cache_clear()
    assert here.vnni == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    assert here.bf16 == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert here.amx == ("amx_tile" in flags)
    assert here.capability == torch.backends.cpu.get_cpu_capability()
    assert here.limited_by is None


CAPPED = """
import json, torch
from fashionclf.runtime import bf16_supported, cpu
print(json.dumps({**cpu().as_dict(), "bf16_autocast": bf16_supported(torch.device("cpu"))}))
"""


def test_the_avx2_emulation_leaves_no_vnni_and_no_bf16():
    """Under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 any x86 machine decides as an AVX2-only one."""
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", CAPPED], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    capped = json.loads(result.stdout.strip().splitlines()[-1])
    assert capped["capability"] in ("AVX2", "DEFAULT")
    assert (capped["vnni"], capped["bf16"], capped["amx"], capped["bf16_autocast"]) == (False, False, False, False)
    assert capped["limited_by"] == "AVX2"


def test_bf16_autocast_is_used_only_where_the_cpu_has_it():
    assert bf16_supported(torch.device("cpu")) == (cpu().bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_a_run_records_the_cpu_it_ran_on():
    recorded = environment(torch.device("cpu"))["cpu"]
    assert Cpu.from_dict(recorded) == cpu()


@pytest.mark.parametrize(
    ("machine", "words"),
    [
        (Cpu("AMD EPYC", "AVX2", False, False, False), "has no VNNI (AVX2)"),
        (Cpu("Intel Xeon", "AVX512", True, True, True), "has VNNI (AVX512, AMX)"),
        (Cpu("Xeon", "AVX2", False, False, False, "AVX2"), "has no VNNI (AVX2, as ONEDNN_MAX_CPU_ISA=AVX2 allows)"),
    ],
)
def test_the_int8_support_in_words(machine, words):
    assert machine.int8_support == words
