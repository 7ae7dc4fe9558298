"""What this CPU is, in one place: its name, its SIMD flags, and which INT8 kernels it runs.

Speed tables name the CPU (machines here differ: AVX-512 + VNNI or AVX2 only), the app's
pi profile picks INT8 only where 8-bit dot products make it pay, and INT8 results
themselves depend on the integer kernels: ONNX Runtime's u8 x s8 convolutions are exact
with 8-bit dot products (x86 VNNI, ARM asimddp), but on x86 without VNNI they add pairs
of products in saturating 16-bit (vpmaddubsw), so an INT8 file's labels differ slightly
there (measured: 98.4 to 99.3 % agreement with FP32 on AVX2, 99.0 to 99.7 % with VNNI).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The flags that matter for inference, in the order a speed table lists them.
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd",
              "asimddp", "neon")
# 8-bit dot-product instructions: ARM (asimddp) and x86 (VNNI, AMX).
INT8_DOT_FLAGS = ("asimddp", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_name_and_flags(cpuinfo: Path = CPUINFO) -> tuple[str, set[str]]:
    """The CPU's model name and its flags (empty where /proc/cpuinfo is missing)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, flags


def cpu_line() -> str:
    """CPU model, logical cores and the SIMD flags that matter for inference, in one line."""
    name, flags = cpu_name_and_flags()
    have = [f for f in SIMD_FLAGS if f in flags]
    return f"CPU: {name}, {os.cpu_count()} logical cores, flags: {' '.join(have) or 'n/a'}"


def has_int8_dot(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU advertises 8-bit dot-product instructions (where INT8 pays off)."""
    return any(flag in cpu_name_and_flags(cpuinfo)[1] for flag in INT8_DOT_FLAGS)


def int8_kernels(cpuinfo: Path = CPUINFO) -> str:
    """The INT8 kernel family this CPU runs, e.g. ``x86_64 int8-dot`` or ``x86_64 no-int8-dot``:
    INT8 results are reproducible within a family, not across them (see the module docstring)."""
    machine = platform.machine().lower() or "unknown"
    return f"{machine} {'int8-dot' if has_int8_dot(cpuinfo) else 'no-int8-dot'}"
