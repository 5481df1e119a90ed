"""`ResourceRequest`: what a workflow asks of the machine that runs it (`requests=`).

Kept and validated for programs that declare it; this engine runs workflows in the calling
process and does not place them on workers, so it checks nothing against the machine.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ResourceRequest"]

_MEMORY = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.I)


class ResourceRequest:
    """`memory` (bytes, or a size such as "512Mi" or "2g"), `cpu`, `disk`, `gpu` and `packages`
    (requirement strings)."""

    def __init__(
        self,
        memory: str | int | None = None,
        cpu: int | None = None,
        disk: int | None = None,
        gpu: int | None = None,
        packages: list[str] | None = None,
    ) -> None:
        if memory is not None and not (
            (isinstance(memory, int) and not isinstance(memory, bool) and memory > 0)
            or (isinstance(memory, str) and _MEMORY.match(memory))
        ):
            raise ValueError(f"memory={memory!r} must be a positive number of bytes or a size such as '512Mi'")
        for key, value in (("cpu", cpu), ("disk", disk), ("gpu", gpu)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{key}={value!r} must be an int >= 0")
        if packages is not None and (
            isinstance(packages, str) or not all(isinstance(p, str) and p for p in packages)
        ):
            raise ValueError(f"packages={packages!r} must be a list of requirement strings")
        self.memory = memory
        self.cpu = cpu
        self.disk = disk
        self.gpu = gpu
        self.packages = list(packages) if packages is not None else None

    @classmethod
    def with_memory(cls, memory: str | int) -> ResourceRequest:
        return cls(memory=memory)

    @classmethod
    def with_cpu(cls, cpu: int) -> ResourceRequest:
        return cls(cpu=cpu)

    @classmethod
    def with_disk(cls, disk: int) -> ResourceRequest:
        return cls(disk=disk)

    @classmethod
    def with_gpu(cls, gpu: int) -> ResourceRequest:
        return cls(gpu=gpu)

    @classmethod
    def with_packages(cls, packages: list[str]) -> ResourceRequest:
        return cls(packages=packages)

    def to_dict(self) -> dict[str, Any]:
        return {"memory": self.memory, "cpu": self.cpu, "disk": self.disk, "gpu": self.gpu, "packages": self.packages}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v is not None)
        return f"ResourceRequest({fields})"
