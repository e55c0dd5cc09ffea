"""What the CPU can do, and the serving settings that follow from it.

Why this exists: on a CPU without native bf16 matrix instructions (AVX2-only EPYCs, for one) PyTorch emulates bf16
and a matrix product runs about 5x slower than in fp32, so a server started with ``--dtype bfloat16`` there is too
slow for the pipeline's timeouts. The choice is made from the CPU's flags, never from the machine this was written on.
"""

from __future__ import annotations

import contextlib
import glob
import platform
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Dtype = Literal["bfloat16", "float32"]

# x86: AVX512-BF16 (Zen 4+, Cooper Lake+) or AMX-BF16 (Sapphire Rapids+) give native bf16 dot products.
# aarch64: the "bf16" feature (Neoverse V1/N2, Graviton 3+) does the same.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


class CpuInfo(BaseModel):
    model: str = Field(description="CPU model name as /proc/cpuinfo gives it.")
    arch: str = Field(description="platform.machine(), e.g. x86_64 or aarch64.")
    flags: frozenset[str] = Field(description="Instruction-set flags (x86 'flags', aarch64 'Features').")

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)

    def vector_flags(self) -> list[str]:
        """The flags that decide matrix speed, for logs and benchmark files."""
        keep = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni", "fma",
                "neon", "asimd", "sve", "bf16", "i8mm")
        return sorted(f for f in self.flags if f in keep)


def read_cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` (or the text given, for tests). Missing file: no flags, so the safe fp32 branch."""
    if cpuinfo is None:
        cpuinfo = ""
        with contextlib.suppress(OSError):
            cpuinfo = Path("/proc/cpuinfo").read_text()
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    model = model or platform.processor() or "unknown"
    return CpuInfo(model=model, arch=platform.machine(), flags=frozenset(flags))


class DtypeChoice(BaseModel):
    dtype: Dtype
    reason: str


def choose_dtype(requested: Literal["auto", "bfloat16", "float32"], cpu: CpuInfo) -> DtypeChoice:
    """bf16 only where the CPU multiplies bf16 natively; a forced choice is kept and says so."""
    if requested != "auto":
        warn = "" if requested == "float32" or cpu.native_bf16 else \
            " (this CPU has no native bf16 instructions: expect about 5x slower matrix products)"
        return DtypeChoice(dtype=requested, reason=f"forced by embedded.dtype={requested}{warn}")
    if cpu.native_bf16:
        found = sorted(f for f in NATIVE_BF16_FLAGS if f in cpu.flags)
        return DtypeChoice(dtype="bfloat16", reason=f"CPU has native bf16 ({', '.join(found)})")
    return DtypeChoice(dtype="float32",
                       reason="CPU lacks native bf16 (no avx512_bf16/amx_bf16/bf16 flag): bf16 would be emulated")


def _first(patterns: list[str]) -> str | None:
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def tcmalloc_path() -> str | None:
    """tcmalloc from the OS package (``libtcmalloc-minimal4``, installed by ``make install``) or vLLM's own copy."""
    import importlib.util

    roots = ["/usr/lib/*-linux-gnu", "/usr/lib64", "/usr/lib"]
    spec = importlib.util.find_spec("vllm")
    if spec is not None and spec.submodule_search_locations:
        roots.insert(0, str(Path(next(iter(spec.submodule_search_locations))) / "libs"))
    return _first([f"{root}/libtcmalloc_minimal.so*" for root in roots] + [f"{root}/libtcmalloc.so*" for root in roots])


def server_env(base: dict[str, str], preload_tcmalloc: bool) -> tuple[dict[str, str], list[str]]:
    """The environment for a vLLM CPU server, and a line per setting applied (for the log and the report).

    vLLM itself preloads PyTorch's libgomp into its engine process when no OpenMP runtime is preloaded, and binds
    its OpenMP threads to cores (``VLLM_CPU_OMP_THREADS_BIND=auto``); we leave both as they are (measured in
    ``make bench``). tcmalloc cuts allocation overhead; it is preloaded when found.
    """
    env = dict(base)
    notes: list[str] = []
    if preload_tcmalloc and "libtcmalloc" not in env.get("LD_PRELOAD", ""):
        lib = tcmalloc_path()
        if lib:
            env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
            notes.append(f"LD_PRELOAD {lib}")
        else:
            notes.append("tcmalloc not found (install libtcmalloc-minimal4; `make install` does as root)")
    return env, notes
