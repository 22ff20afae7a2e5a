"""Device choice and reproducibility settings shared by training and decoding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gnerv.runtime.errors import GnervError

if TYPE_CHECKING:
    import torch

DEFAULT_DEVICE = "auto"  # the GPU when one is present, else the CPU


def select_device(name: str = DEFAULT_DEVICE) -> torch.device:
    """'auto' -> the GPU when one is present, else the CPU; 'cpu', 'cuda', 'cuda:1' as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GnervError(f"device '{name}' is not a torch device: use auto, cpu or cuda[:N]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GnervError(f"device '{name}' asked for, but no CUDA GPU is visible: use auto or cpu")
    return dev


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on the device (CUDA) or available RAM (CPU, from /proc/meminfo)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
