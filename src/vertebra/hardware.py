"""What the CPU can do, read once: bfloat16 and int8 support for inference."""
import platform
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX-BF16, where bfloat16 matrix products are fast."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_supports_int8() -> bool:
    """True on CPUs with VNNI (AVX512 or AVX) or AMX-INT8, where int8 convolutions are fast."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (what a measured speed depends on), or the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
