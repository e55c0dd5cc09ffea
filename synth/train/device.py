"""Where training runs and in which dtype: CUDA when present, else the CPU; bf16 only where the hardware has it.

Weights and optimizer state stay fp32 everywhere; bf16 is an autocast compute dtype. On a CPU, ``auto`` takes bf16
only where the CPU multiplies bf16 natively (AVX512-BF16, AMX-BF16, aarch64 bf16): an AVX2-only CPU emulates it
about 5x slower than fp32, while a CPU with native bf16 trains about 3x faster in bf16 autocast than in fp32
(docs/studies/train-cpu.md).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel

from synth.errors import SynthError


class DeviceUnavailable(SynthError, RuntimeError):
    """The device or dtype a job asks for is not on this machine."""

    hint = "use device auto (or cpu) and dtype auto, or run the job where that hardware is"


class DevicePlan(BaseModel):
    device: str
    autocast_dtype: Literal["float32", "bfloat16"]
    reason: str

    @property
    def torch_autocast(self) -> torch.dtype | None:
        return torch.bfloat16 if self.autocast_dtype == "bfloat16" else None


def _cpu_native_bf16() -> tuple[bool, str]:
    try:
        from synth.serve.cpu import read_cpu_info
    except ImportError:  # the CPU probe lives with the server; without it, assume the safe answer
        return False, "CPU flags unknown"
    info = read_cpu_info()
    return info.native_bf16, f"{info.model} ({', '.join(info.vector_flags()) or 'no vector flags'})"


def plan_device(device: Literal["auto", "cpu", "cuda"], dtype: Literal["auto", "float32", "bfloat16"]) -> DevicePlan:
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device=cuda but torch sees no CUDA device")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        bf16 = torch.cuda.is_bf16_supported()
        if dtype == "bfloat16" and not bf16:
            raise DeviceUnavailable("dtype=bfloat16 but this GPU has no bf16", hint="use dtype float32")
        chosen = "bfloat16" if dtype == "bfloat16" or (dtype == "auto" and bf16) else "float32"
        return DevicePlan(device="cuda", autocast_dtype=chosen,  # type: ignore[arg-type]
                          reason=f"CUDA ({torch.cuda.get_device_name()}), {chosen} autocast")
    native, what = _cpu_native_bf16()
    if dtype == "bfloat16":
        warn = "" if native else "; this CPU has no native bf16: expect it about 5x slower than float32"
        return DevicePlan(device="cpu", autocast_dtype="bfloat16", reason=f"CPU {what}, bf16 forced{warn}")
    if dtype == "auto" and native:
        return DevicePlan(device="cpu", autocast_dtype="bfloat16", reason=f"CPU {what}: native bf16, bf16 autocast")
    why = "forced" if dtype == "float32" else "no native bf16"
    return DevicePlan(device="cpu", autocast_dtype="float32", reason=f"CPU {what}, fp32 ({why})")
