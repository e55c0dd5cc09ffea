"""What a benchmark ran on, so a number is never separated from its machine."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform


def machine_info() -> dict[str, str | int]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    mem_gib = 0
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
            "cpu": cpu, "cores": os.cpu_count() or 0, "mem_gib": mem_gib, "python": platform.python_version()}
